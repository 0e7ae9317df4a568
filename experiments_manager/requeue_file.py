"""`--requeue-file FILE`: remembers the folder a job works in, so the same job, requeued, resumes it.

A batch job cannot know in advance the dated folder `train` or `sweep` will
create. With `--requeue-file`, the first run writes that folder's path to FILE
as soon as the folder exists; a rerun of the same command line (Slurm's
`scontrol requeue`, a preempted job started again) finds FILE and resumes the
folder instead of starting over.
"""

from pathlib import Path

from experiments_manager.atomic import write_text_atomically
from experiments_manager.errors import UserInputError


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
