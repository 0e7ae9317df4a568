"""Background work yields the disk to training.

A training run's background threads (a version's export, the drawing of training_curves.png) call
`yield_to_training()` first: on Linux, I/O priority is per thread, and theirs drops to the lowest of the
best-effort class (what `ionice -c2 -n7` sets): a version's writes and fsyncs queue behind the input pipeline's
reads. Their CPU priority stays: the drawing is Python holding the GIL, and a low-priority thread holding the GIL
makes the training thread wait for it between two steps (a priority inversion); a version's write is TensorFlow's
C++ with the GIL released, but at a raised niceness (+10) on a loaded node it would risk the "on disk within about
2 s" a served version promises. Elsewhere (macOS), or where the kernel refuses, it does nothing.
"""

import ctypes
import logging
import platform
import threading
from typing import Optional

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
