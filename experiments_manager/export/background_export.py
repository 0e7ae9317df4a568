"""Runs exports in a background thread, one at a time, while the training thread goes on.

The training thread hands over a job that reads no live variable (it writes a snapshot of values taken at the
epoch's end), and goes on training: `utils/background.py`'s `BackgroundWorker` (its own non-daemon thread, a lower
I/O priority, at most one job in flight). A failed job is never swallowed: the next `submit` or `wait` raises
`ExportFailed`, and the run fails with its message (a run a signal stops logs it instead, and keeps its exit code).
"""

from experiments_manager.utils.background import BackgroundWorker


class ExportFailed(RuntimeError):
    """A background export failed; the message names the version and the error (its `__cause__`).

    Args:
        message: "the export of version 3 (after epoch 5) failed: OSError: ...".

    Example:

    ```python
    try:
        exporter.wait()
    except ExportFailed as failure:
        print(failure)   # the export of version 3 (after epoch 5) failed: OSError: No space left on device
    ```
    """


class ExportWorker(BackgroundWorker):
    """Runs one export job at a time in a background thread; a failed job is raised as `ExportFailed`.

    Args:
        name: the threads' name (default "export").

    Example:

    ```python
    worker = ExportWorker()
    worker.submit(lambda: template.write(folder, values), "version 3 (epoch 5)")
    ...                                   # training goes on
    worker.wait()                         # finished; raises ExportFailed if it failed
    ```
    """

    def __init__(self, name: str = "export") -> None:
        super().__init__(name)

    def failure(self, description: str, error: BaseException) -> BaseException:
        failure = ExportFailed(f"the export of {description} failed: {type(error).__name__}: {error}")
        failure.__cause__ = error
        return failure
