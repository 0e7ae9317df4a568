"""`--requeue-file FILE`: remembers the folder a job works in, so the same job, requeued, resumes it.

A batch job cannot know in advance the dated folder `train` or `sweep` will
create. With `--requeue-file`, the first run writes that folder's path to FILE
as soon as the folder exists; a rerun of the same command line (Slurm's
`scontrol requeue`, a preempted job started again) finds FILE and resumes the
folder instead of starting over.
"""

import logging
from pathlib import Path

from experiments_manager.utils.atomic import write_text_atomically
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

    def __init__(self, path):
        self.path = Path(path)

    def folder(self):
        """The remembered folder, or None when this is the job's first run."""
        if not self.path.is_file():
            return None
        text = self.path.read_text().strip()
        if not text or not Path(text).is_dir():
            raise UserInputError(f"--requeue-file: {self.path}: expected the path of an existing folder, "
                                 f"got {text!r} (delete the file to start a new run)")
        return Path(text)

    def remember(self, folder):
        """Writes `folder` (absolute) to the file, atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(self.path, f"{Path(folder).resolve()}\n")


def resume_remembered(arguments, recorded):
    """`--requeue-file`: when FILE names a folder, turns the parsed command into `--resume` of that folder.

    A requeued job repeats its first command line; the options listed in
    `recorded` were recorded by the first run and are reset, so the resume
    does not refuse them.

    Args:
        arguments: the parsed command line (with `requeue_file`, `resume`, `usersettings`).
        recorded: option name -> the value it is reset to (its default).

    Returns:
        the `RequeueFile` a new run must write its folder to, or None (no
        `--requeue-file`, or it named a folder to resume).
    """
    if not arguments.requeue_file:
        return None
    requeue = RequeueFile(arguments.requeue_file)
    remembered = requeue.folder()
    if remembered is None:
        return requeue
    _LOG.info("%s names %s: resuming it", requeue.path, remembered)
    arguments.resume, arguments.usersettings = str(remembered), None
    for name, default in recorded.items():
        setattr(arguments, name, default)
    return None


def add_requeue_file_argument(parser, what="the run's folder", then="the run resumes from its checkpoint"):
    """Adds `--requeue-file FILE` to an argparse parser (`train` and `sweep` share it).

    Args:
        parser: the sub-command's parser.
        what: what FILE remembers, for the help text.
        then: what a rerun with the same FILE does, for the help text.
    """
    parser.add_argument("--requeue-file", metavar="FILE",
                        help=f"for batch jobs: {what} is written to FILE; rerun with the same FILE (a requeued job), "
                        f"{then} instead of starting again")
