"""Failures of the machine, not of the code or the input: a full disk, a quota, a read-only or failing file system,
a permission. Each is one line naming the path and what to do, exit code 75 (EX_TEMPFAIL: resume once it is
mended), never a traceback.

Example:

```python
try:
    trainer.run()
except OSError as error:
    line = environment_failure_line(error)   # None: not the machine's; raise it as it is
```
"""

from __future__ import annotations

import errno
import logging
import os
import re
from typing import TYPE_CHECKING, Callable, Optional

from experiments_manager.utils.errors import EXIT_TEMPFAIL, UserInputError

if TYPE_CHECKING:
    from experiments_manager.utils.atomic import PathLike

ADVICE = {
    errno.ENOSPC: "free space on that file system (or move the working folder)",
    errno.EDQUOT: "free space in your quota there (`quota -s`, `lfs quota -u $USER <fs>`), or ask for more",
    errno.EROFS: "the file system is mounted read-only: choose a writable workingFolder",
    errno.EACCES: "no permission to write there: choose a folder of yours, or fix its permissions",
    errno.EIO: "the storage failed a read or write: check the file system (dmesg), then resume",
    errno.ESTALE: "the shared file system lost track of the file (remounted, or replaced from another node): "
                  "check the mount, then resume",
}
# HDF5 and TensorFlow report an OS error in their own words: "errno = 28, error message = 'No space left on device'"
_ERRNO_IN_TEXT = re.compile(r"errno\s*=\s*(\d+)")
# the words of the disk's own failures, in a message without an errno (TensorFlow's file writes); a permission or a
# read-only file system counts only with the file it names (a port below 1024 is not the disk's)
_LOG = logging.getLogger(__name__)
_STRERROR_IN_TEXT = {os.strerror(number): number for number in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ESTALE)}
_NEED_A_FILE = (errno.EACCES, errno.EROFS)


class EnvironmentFailure(UserInputError):
    """The machine failed a write (full disk, quota, read-only, permission, I/O error): one line, exit code 75."""

    exit_code = EXIT_TEMPFAIL


def environment_errno(error: Optional[BaseException]) -> Optional[int]:
    """The errno of the machine's failure behind `error` (itself, its causes, or an HDF5/TensorFlow message that
    quotes one), or None when `error` is not one."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        number: Optional[int] = getattr(error, "errno", None)
        if number in ADVICE and (number not in _NEED_A_FILE or getattr(error, "filename", None)):
            return number
        text = str(error)
        quoted = _ERRNO_IN_TEXT.search(text)
        if quoted and int(quoted.group(1)) in ADVICE and int(quoted.group(1)) not in _NEED_A_FILE:
            return int(quoted.group(1))
        for words, number in _STRERROR_IN_TEXT.items():
            if words in text:
                return number
        error = error.__cause__ or error.__context__
    return None


def both_storage_failures(failure: BaseException, ending: Optional[BaseException]) -> bool:
    """Whether the background `failure` (a version's, a checkpoint's or a drawing's) goes unsaid when the run
    ends: both it and `ending`, the error ending the run (None: none), are the storage's (a full or failing disk),
    so the run's one line already says it. Any other failure is logged beside the run's own ending."""
    return environment_errno(ending) is not None and environment_errno(failure) is not None


def environment_failure_line(error: BaseException, where: Optional[str] = None) -> Optional[str]:
    """'PATH: No space left on device: free space on that file system ...', or None when `error` is not the
    machine's failure. `where`: the folder named when the error names no file."""
    number = environment_errno(error)
    if number is None:
        return None
    path = _shown(_filename(error)) or where
    return f"{path + ': ' if path else ''}{os.strerror(number)}: {ADVICE[number]}"


def raise_environment_failure(error: BaseException, where: str) -> None:
    """Raises `EnvironmentFailure` (one line, exit 75) when `error` is the machine's failure (a read of the run's
    own files that the storage failed, EIO or ESTALE: not a damaged file); returns otherwise.

    Example:

    ```python
    except OSError as error:
        raise_environment_failure(error, str(experiment.root))
        raise UserInputError(f"{path}: expected a JSON object: {error}") from None
    ```
    """
    line = environment_failure_line(error, where)
    if line is not None:
        raise EnvironmentFailure(line) from None


def stop_on_environment_failure(error: BaseException, where: Optional[PathLike], resume_command: str,
                                record: Callable[[str], object]) -> None:
    """Raises `EnvironmentFailure` (one line, exit 75) when `error` is the machine's failure, after
    `record(line)` marks the run or sweep interrupted, if the disk still takes that write; returns otherwise.

    Args:
        error: what stopped the run.
        where: the folder named when the error names no file (the experiment, the sweep).
        resume_command: what the user runs once the machine is mended.
        record: function line -> None that records the interruption (run.json, sweep.json).

    Example:

    ```python
    stop_on_environment_failure(error, experiment.root, experiment.resume_hint(),
                                lambda line: record_ending(experiment, endings.environment_failure(line)))
    ```
    """
    line = environment_failure_line(error, str(where))
    if line is None:
        return
    line = f"{line}; then resume with: {resume_command}"
    try:
        record(line)
    except OSError as again:  # the same failure, most likely: `list` shows the run `dead` from its lease
        _LOG.debug("%s: the interruption could not be recorded (%s)", where, again.strerror or again)
    raise EnvironmentFailure(line) from error


def _shown(name: Optional[str]) -> Optional[str]:
    """The path a line names: a temporary file's folder (`.run.json.123.tmp` means nothing to the user)."""
    if name and os.path.basename(name).startswith(".") and ".tmp" in os.path.basename(name):
        return os.path.dirname(name) or "."
    return name


def _filename(error: Optional[BaseException]) -> Optional[str]:
    while error is not None:
        name = getattr(error, "filename", None)
        if name:
            return str(name)
        error = error.__cause__ or error.__context__
    return None
