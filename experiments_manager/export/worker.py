"""Runs exports in a background thread, one at a time, while the training thread goes on.

The training thread hands over a job that reads no live variable (it writes a snapshot of values taken at the
epoch's end), and goes on training. A job runs in its own (non-daemon) thread: an interpreter that exits waits
for it, so a version is never cut short by the end of the run; it runs at a lower I/O priority
(`utils/background.py`). At most one job is in flight: `submit` first waits
for the previous one. A failed job is never swallowed: the next `submit` or `wait` raises `ExportFailed`, and the
run fails with its message (a run a signal stops logs it instead, and keeps its exit code).
"""

import threading
from typing import Callable, Optional

from experiments_manager.utils.background import yield_to_training


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


class ExportWorker:
    """Runs one export job at a time in a background thread.

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
        self.name = name
        self._thread: Optional[threading.Thread] = None
        self._failure: Optional[tuple[str, BaseException]] = None  # the job that failed and its error, until raised

    def submit(self, job: Callable[[], object], description: str) -> None:
        """Waits for the previous job (raising its failure), then starts `job()` in a new thread.

        Args:
            job: a function of no arguments.
            description: what the job makes, for the failure's message ("version 3 (epoch 5)").
        """
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(job, description), name=self.name)
        self._thread.start()

    def wait(self) -> None:
        """Waits for the job in flight, if any; raises `ExportFailed` (once) when a job failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._failure is not None:
            description, error = self._failure
            self._failure = None
            raise ExportFailed(f"the export of {description} failed: {type(error).__name__}: {error}") from error

    def _run(self, job: Callable[[], object], description: str) -> None:
        try:
            yield_to_training()  # the training thread and the input pipeline get the disk first
            job()
        except BaseException as error:  # raised on the training thread by the next submit or wait
            self._failure = (description, error)
