"""Background work: one job at a time in a thread (`BackgroundWorker`), yielding the disk to training.

A training run's background threads (a version's export, a checkpoint's write, the drawing of
training_curves.png) call `yield_to_training()` first: on Linux, I/O priority is per thread, and theirs drops to
the lowest of the best-effort class (what `ionice -c2 -n7` sets): their writes and fsyncs queue behind the input
pipeline's reads. Their CPU priority stays: the drawing is Python holding the GIL, and a low-priority thread
holding the GIL makes the training thread wait for it between two steps (a priority inversion); a version's write
is TensorFlow's C++ with the GIL released, but at a raised niceness (+10) on a loaded node it would risk the "on
disk within about 2 s" a served version promises. Elsewhere (macOS), or where the kernel refuses, it does nothing.
"""

import ctypes
import logging
import platform
import threading
from typing import Callable, Optional

_IOPRIO_CLASS_BE, _IOPRIO_CLASS_SHIFT, _IOPRIO_LOWEST_LEVEL, _IOPRIO_WHO_PROCESS = 2, 13, 7, 1
_IOPRIO_SYSCALLS = {"x86_64": (251, 252), "aarch64": (30, 31), "ppc64le": (273, 274)}  # (ioprio_set, ioprio_get)
_LOG = logging.getLogger(__name__)


def yield_to_training() -> None:
    """Lowers the calling thread's I/O priority to the lowest of the best-effort class (level 7).

    Call it first thing in a thread that does a run's background work; it cannot be undone without privileges,
    so only in a thread made for that work.

    Example:

    ```python
    threading.Thread(target=lambda: (yield_to_training(), write_version())).start()
    ```
    """
    thread = threading.get_native_id()
    value = (_IOPRIO_CLASS_BE << _IOPRIO_CLASS_SHIFT) | _IOPRIO_LOWEST_LEVEL
    if _ioprio_syscall(0, _IOPRIO_WHO_PROCESS, thread, value) != 0:
        _LOG.debug("I/O priority of thread %s not lowered", thread)


def io_priority() -> Optional[tuple[int, int]]:
    """The calling thread's I/O priority as (class, level) (class 0: none set, the default), or None where it
    cannot be read."""
    value = _ioprio_syscall(1, _IOPRIO_WHO_PROCESS, threading.get_native_id())
    if value is None or value < 0:
        return None
    return value >> _IOPRIO_CLASS_SHIFT, value & ((1 << _IOPRIO_CLASS_SHIFT) - 1)


def _ioprio_syscall(which: int, *arguments: int) -> Optional[int]:
    """`ioprio_set` (which=0) or `ioprio_get` (which=1) through libc's `syscall`; None where there is none."""
    numbers = _IOPRIO_SYSCALLS.get(platform.machine()) if platform.system() == "Linux" else None
    if numbers is None:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.syscall(numbers[which], *(ctypes.c_int(argument) for argument in arguments)))
    except (OSError, AttributeError):
        return None


class BackgroundWorker:
    """Runs one job at a time in a background thread while the calling (training) thread goes on.

    The job must read no live variable: the calling thread hands over what it needs (a snapshot of values). Each
    job runs in its own non-daemon thread, so an interpreter that exits waits for it (a file is never cut short by
    the end of the run), after `yield_to_training()`. `submit` first waits for the previous job. A failed job is
    never swallowed: the next `submit` or `wait` raises `failure(description, error)` (by default the job's own
    error, as if the calling thread had run the job).

    Args:
        name: the threads' name (default "background").

    Example:

    ```python
    worker = BackgroundWorker("checkpoint")
    worker.submit(lambda: checkpointer.write(snapshot), "the checkpoint after epoch 5")
    ...                                   # training goes on
    worker.wait()                         # finished; raises the job's error if it failed
    ```
    """

    def __init__(self, name: str = "background") -> None:
        self.name = name
        self._thread: Optional[threading.Thread] = None
        self._failed: Optional[tuple[str, BaseException]] = None  # the job that failed and its error, until raised

    def submit(self, job: Callable[[], object], description: str) -> None:
        """Waits for the previous job (raising its failure), then starts `job()` in a new thread.

        Args:
            job: a function of no arguments.
            description: what the job makes, for a failure's message ("version 3 (after epoch 5)").
        """
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(job, description), name=self.name)
        self._thread.start()

    def wait(self) -> None:
        """Waits for the job in flight, if any; raises (once) what `failure` makes of a job's error."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._failed is not None:
            description, error = self._failed
            self._failed = None
            raise self.failure(description, error)

    def failure(self, description: str, error: BaseException) -> BaseException:
        """What `wait` raises for a failed job: `error` itself (a subclass may wrap it, naming `description`)."""
        return error

    def _run(self, job: Callable[[], object], description: str) -> None:
        try:
            yield_to_training()  # the training thread and the input pipeline get the disk first
            job()
        except BaseException as error:  # raised on the calling thread by the next submit or wait
            self._failed = (description, error)
