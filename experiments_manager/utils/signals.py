"""Signals: the ones that stop a run, temporary handlers (the one place the project calls `signal.signal`),
and the watch that stops a child process whose parent is gone."""

import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Callable, Iterable, Iterator, Optional, Union

Handler = Union[Callable[[int, Optional[FrameType]], object], int, signal.Handlers, None]  # what signal.signal takes

_LOG = logging.getLogger(__name__)

# What stops a run cleanly (checkpoint, `interrupted`, exit 128 + signal): SIGTERM (scancel, kill), SIGUSR1
# (Slurm's warning before preemption or the time limit, `--signal=USR1@120`), SIGINT (Ctrl-C).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
LAUNCHER_PID_VARIABLE = "EXPERIMENTS_MANAGER_LAUNCHER_PID"  # in a started worker's environment: the launcher to watch


class SignalSafeEvent(threading.Event):
    """A `threading.Event` that a signal handler may set while the main thread waits on it.

    Python runs a handler in the main thread, between two bytecodes. A
    `threading.Event` guards its flag with a lock that is not reentrant: when
    the signal comes while the main thread holds it (inside `wait`, at any
    moment but the blocked one), the handler's `set()` waits for itself, and
    the process ignores every later signal but SIGKILL. Two SIGTERMs at once
    (`timeout` forwards the one `pkill` sent it too) hung `serve` so. Here the
    lock is reentrant, and `wait` lists its waiter before it reads the flag:
    a `set()` at any point of a `wait` is either read or wakes it.

    Example:

    ```python
    stop = SignalSafeEvent()
    with signal_handlers(lambda signum, frame: stop.set()):
        while not stop.wait(1.0):
            ...
    ```
    """

    def __init__(self) -> None:
        super().__init__()
        self._guard = threading.RLock()
        self._waiters: list[threading.Lock] = []

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with self._guard:
            self._flag = True
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.release()

    def clear(self) -> None:
        with self._guard:
            self._flag = False

    def wait(self, timeout: Optional[float] = None) -> bool:
        waiter = threading.Lock()
        waiter.acquire()
        with self._guard:
            self._waiters.append(waiter)
        try:
            if not self._flag:  # a set() from here on releases the waiter
                waiter.acquire(True, -1 if timeout is None else max(0.0, timeout))
        finally:
            with self._guard:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return self._flag


@contextlib.contextmanager
def signal_handlers(handler: Handler, signums: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Within the block, `handler` receives `signums`; the previous handlers come back afterwards.

    Python delivers signals to the main thread only and refuses to install
    handlers elsewhere: off the main thread this installs nothing and the
    caller's handlers apply.

    Args:
        handler: a `signal.signal` handler (a function of signum, frame, or a `signal.SIG*` constant).
        signums: the signals to handle.

    A handler runs in the main thread between any two of its bytecodes, so it
    must not take a lock that thread may hold: an event it sets is a
    `SignalSafeEvent`, not a `threading.Event`.

    Example:

    ```python
    received: list[int] = []  # a list's append takes no lock
    with signal_handlers(lambda signum, frame: received.append(signum), STOP_SIGNALS):
        train_until(lambda: bool(received))
    ```
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, previous_handler in previous.items():
            signal.signal(signum, previous_handler)


def watch_parent(parent_pid: int, on_gone: Callable[[], object], interval: float = 1.0) -> None:
    """Calls `on_gone()` once, from a daemon thread, when this process' parent is no longer `parent_pid`.

    A child started by a sweep or a training run (a trial, an embedded server)
    stops cleanly when its parent dies instead of running on as an orphan.

    Args:
        parent_pid: the parent's pid, as the parent passed it.
        on_gone: function of no argument.
        interval: seconds between two checks (default 1).

    Example:

    ```python
    watch_parent(parent_pid, lambda: os.kill(os.getpid(), signal.SIGTERM))
    ```
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            stopped.wait(interval)
        on_gone()

    stopped = threading.Event()  # never set: only the wait's timeout
    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def stop_when_orphaned(parent_pid: int, parent: str, interval: float = 0.5, kill_after: Optional[float] = None) -> None:
    """Sends this process SIGTERM (a run checkpoints and ends `interrupted`) once its parent `parent_pid` is gone.

    Args:
        parent_pid: the parent's pid, as the parent passed it.
        parent: what the parent is, for the warning ("the sweep process 123").
        interval: seconds between two checks (default 0.5).
        kill_after: seconds after the SIGTERM to send SIGKILL (default None: never), for a process the SIGTERM
            may not reach in time (a worker waiting in a collective for a peer that is gone).

    Example:

    ```python
    stop_when_orphaned(parent_pid, f"the sweep process {parent_pid}")
    ```
    """

    def stop() -> None:
        _LOG.warning("%s is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)
        if kill_after is not None:
            time.sleep(kill_after)
            os.kill(os.getpid(), signal.SIGKILL)

    watch_parent(parent_pid, stop, interval)


def process_alive(pid: Optional[int]) -> bool:
    """True when a process with this pid runs on this machine (another user's counts); False for no pid, and for a
    process that ended but was not yet reaped by its parent (a zombie: Flower's SuperExec reaps its ServerApps late,
    and a zombie holds no file and writes nothing more)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    fields = process_stat_fields(pid)
    return not fields or fields[0] not in ("Z", "X")  # Z: a zombie, X: dead (None: /proc cannot tell)


def process_stat_fields(pid: int) -> Optional[list[str]]:
    """The fields of /proc/PID/stat after the process' name (Linux: the state first, the start time 20th), or None
    when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()  # (the name, in parentheses, may hold spaces and parentheses)
