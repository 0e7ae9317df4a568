"""Background work yields the cores and the disk to training.

A training run's background threads (a version's export, the drawing of training_curves.png) call
`yield_to_training()` first: on Linux, CPU priority and I/O priority are per thread, so the export thread's
niceness goes up by `NICENESS` (the kernel then gives the training thread and the input pipeline's threads the cores
first when they want them; the export runs in TensorFlow's C++ with the GIL released) and the I/O priority of both
drops to the lowest of the best-effort class (what `ionice -c2 -n7` sets): a version's fsyncs queue behind the input
pipeline's reads. The drawing thread keeps its CPU priority: it holds the GIL (see `yield_to_training`). The work still gets every idle cycle: a machine with
cores to spare runs it as fast as before. Elsewhere (macOS), or where the kernel refuses, it does nothing.
"""

import ctypes
import logging
import os
import platform
import threading
from typing import Optional

NICENESS = 10  # added to the thread's niceness (at most 19, the lowest priority)
_IOPRIO_CLASS_BE, _IOPRIO_CLASS_SHIFT, _IOPRIO_LOWEST_LEVEL, _IOPRIO_WHO_PROCESS = 2, 13, 7, 1
_IOPRIO_SYSCALLS = {"x86_64": (251, 252), "aarch64": (30, 31), "ppc64le": (273, 274)}  # (ioprio_set, ioprio_get)
_LOG = logging.getLogger(__name__)


def yield_to_training(cpu: bool = True) -> None:
    """Lowers the calling thread's CPU priority (niceness + `NICENESS`) and its I/O priority (best effort, level 7).

    Call it first thing in a thread that does a run's background work; it cannot be undone without privileges,
    so only in a thread made for that work.

    Args:
        cpu: also raise the niceness (default True). False for a thread that holds the GIL most of its time (a
            matplotlib drawing): a low-priority thread holding the GIL makes the training thread wait for it
            between two steps (a priority inversion), so such a thread keeps its CPU priority and is bounded
            otherwise (training_curves.png: one drawing per 30 s at most).

    Example:

    ```python
    threading.Thread(target=lambda: (yield_to_training(), write_version())).start()
    ```
    """
    thread = threading.get_native_id()
    if cpu:
        try:
            os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + NICENESS))
        except (OSError, AttributeError) as error:  # no per-thread niceness here: the work runs as before
            _LOG.debug("niceness of thread %s not raised: %s", thread, error)
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
