"""`--requeue-file FILE`: remembers the folder a job works in, so the same job, requeued, resumes it.

A batch job cannot know in advance the dated folder `train` or `sweep` will
create. With `--requeue-file`, the first run writes that folder's path to FILE
as soon as the folder exists; a rerun of the same command line (Slurm's
`scontrol requeue`, a preempted job started again) finds FILE and resumes the
folder instead of starting over.
"""

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any, Optional, TypeVar

from experiments_manager.utils.atomic import PathLike, write_text_atomically
from experiments_manager.utils.errors import UserInputError

_LOG = logging.getLogger(__name__)


class RequeueFile:
    """The file naming a job's experiment (or sweep) folder.

    Args:
        path: the file; its folder is created when needed.

    Example:

    ```python
    requeue = RequeueFile(".slurm-requeue/123456")
    folder = requeue.folder()          # None the first time
    if folder is None:
        requeue.remember(experiment.root)
    ```
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)

    def folder(self) -> Optional[Path]:
        """The remembered folder, or None when this is the job's first run."""
        if not self.path.is_file():
            return None
        text = self.path.read_text().strip()
        if not text or not Path(text).is_dir():
            raise UserInputError(f"--requeue-file: {self.path}: expected the path of an existing folder, "
                                 f"got {text!r} (delete the file to start a new run)")
        return Path(text)

    def remember(self, folder: PathLike) -> None:
        """Writes `folder` (absolute) to the file, atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(self.path, f"{Path(folder).resolve()}\n")


Arguments = TypeVar("Arguments")  # an argparse.Namespace, or a dataclass of the same fields (a sweep's request)


def resume_remembered(arguments: Arguments, recorded: dict[str, Any]) -> "tuple[Arguments, Optional[RequeueFile]]":
    """`--requeue-file`: when FILE names a folder, the parsed command as `--resume` of that folder.

    A requeued job repeats its first command line; the options listed in `recorded` were recorded by the first
    run and are reset, so the resume does not refuse them. `arguments` itself is left as it is.

    Args:
        arguments: the parsed command line (with `requeue_file`, `resume`, `usersettings`): a Namespace or a
            dataclass.
        recorded: option name -> the value it is reset to (its default).

    Returns:
        (the arguments to run: `arguments`, or a copy turned into a resume; the `RequeueFile` a new run must write
        its folder to, or None: no `--requeue-file`, or it named a folder to resume).

    Example:

    ```python
    arguments, requeue = resume_remembered(arguments, recorded={"hparam": [], "init_from": None})
    ```
    """
    if not getattr(arguments, "requeue_file"):
        return arguments, None
    requeue = RequeueFile(getattr(arguments, "requeue_file"))
    remembered = requeue.folder()
    if remembered is None:
        return arguments, requeue
    _LOG.info("%s names %s: resuming it", requeue.path, remembered)
    changes = {**recorded, "resume": str(remembered), "usersettings": None}
    if dataclasses.is_dataclass(arguments) and not isinstance(arguments, type):
        return dataclasses.replace(arguments, **changes), None
    if isinstance(arguments, argparse.Namespace):
        return argparse.Namespace(**{**vars(arguments), **changes}), None  # type: ignore[return-value]
    raise TypeError(f"resume_remembered: expected an argparse.Namespace or a dataclass, got {type(arguments).__name__}")


def add_requeue_file_argument(parser: argparse.ArgumentParser, what: str = "the run's folder",
                              then: str = "the run resumes from its checkpoint") -> None:
    """Adds `--requeue-file FILE` to an argparse parser (`train` and `sweep` share it).

    Args:
        parser: the sub-command's parser.
        what: what FILE remembers, for the help text.
        then: what a rerun with the same FILE does, for the help text.
    """
    parser.add_argument("--requeue-file", metavar="FILE",
                        help=f"for batch jobs: {what} is written to FILE; rerun with the same FILE (a requeued job), "
                        f"{then} instead of starting again")
