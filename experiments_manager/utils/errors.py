"""Errors that mean "the user's input is wrong", as opposed to a bug in the engine, and how they are reported."""

import sys
from typing import TYPE_CHECKING, Iterable, TextIO, Union

if TYPE_CHECKING:
    import os
    import traceback

ERROR_PREFIX = "error: "  # each problem's line on stderr (a sweep reads its trials' reasons from their logs by it)
EXIT_USER_ERROR = 2  # bad input: the command line, a settings file, a folder
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: try again later (stalled input data, trials a sweep lost): resume then
SIGNAL_EXIT_BASE = 128  # a process stopped cleanly by signal N exits 128 + N (as a shell reports one killed by it)


def print_problems(problems: Union[str, Iterable[str]], file: TextIO | None = None) -> None:
    """Prints each problem as one `error: ...` line on stderr (or `file`)."""
    for problem in [problems] if isinstance(problems, str) else problems:
        print(f"{ERROR_PREFIX}{problem}", file=file or sys.stderr)


class UserInputError(Exception):
    """Bad input from the user: reported as one line per problem, exit code 2.

    The command line prints each problem on its own line and exits with code 2,
    without a traceback. Tracebacks are kept for bugs.

    Args:
        problems: one message, or a list of messages. Each message should name
            the file, the field and what was expected, e.g.
            `settings.py: nbEpoch: expected an int > 0, got -3`.

    Example:

    ```python
    raise UserInputError("run.json: status: expected one of running, finished")
    ```
    """

    def __init__(self, problems: Union[str, Iterable[str]]) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class InputStalled(Exception):
    """The training data stopped arriving for longer than the settings allow.

    Training ends `interrupted` with a checkpoint (exit code 75, EX_TEMPFAIL):
    resume it once the data flows again.
    """


def frames_in(error: BaseException, *files: "str | os.PathLike[str]") -> list["traceback.FrameSummary"]:
    """The traceback frames of `error` that ran in `files` (a user's settings or model file), outermost first."""
    import traceback
    from pathlib import Path

    wanted = {Path(file).resolve() for file in files}
    return [frame for frame in traceback.extract_tb(error.__traceback__) if Path(frame.filename).resolve() in wanted]
