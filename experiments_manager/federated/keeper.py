"""The keeper of a SuperNode's worker: starts it with the SuperNode, again when it dies, stops it with the SuperNode.

`experiments-manager federated supernode` creates the SuperNode's private folder (mode 0700), starts the keeper
(`start_keeper`) and then becomes `flower-supernode` (same pid, so Flower's process is the one the user started).
The keeper is that process' child: it runs the worker (`supernode_worker.py`) as its own child, starts it again whenever it
exits (a crash, a SIGKILL: the round in progress fails, the next one has a fresh worker), and when the SuperNode is
gone (it exited, or was killed) or the keeper gets SIGTERM / SIGINT it stops the worker (SIGTERM, then SIGKILL
after `STOP_GRACE_SECONDS`) and removes the folder. The keeper imports neither TensorFlow nor Flower.

Run as `python -m experiments_manager.federated.keeper FOLDER SUPERNODE_PID`.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from experiments_manager.utils.interpreter import python_command  # (these two: the standard library only)
from experiments_manager.utils.signals import SignalSafeEvent, signal_handlers

if TYPE_CHECKING:
    from experiments_manager.utils.atomic import PathLike

_LOG = logging.getLogger("experiments_manager.federated.keeper")  # also when run as __main__
STOP_GRACE_SECONDS = 5.0  # a worker in a round checkpoints at the next step, then exits
CHECK_SECONDS = 0.1  # how often the keeper looks at its worker and at the SuperNode
RESTART_PAUSE_SECONDS = 1.0  # least time between two starts of the worker (one that dies at once)
MAX_RESTART_PAUSE_SECONDS = 30.0  # a worker that keeps dying soon after its start: the pause doubles up to this
STABLE_SECONDS = 60.0  # a worker that lived this long before it died is started again after the shortest pause
FOLDER_PREFIX = "em-supernode-"
STALE_SECONDS = 60.0  # a worker folder whose keeper and worker are dead and that is older is a killed SuperNode's
KEEPER_PID_NAME = "keeper.pid"
MAX_SOCKET_PATH_BYTES = 107  # Linux's sun_path, less its final NUL


def remove_stale_folders(older_than: float = STALE_SECONDS) -> None:
    """Removes the worker folders of SuperNodes killed with their keeper (SIGKILL to the process group): this user's
    folders whose keeper and worker are both dead and that have not changed for `older_than` seconds (the worker's
    status is replaced in the folder: its mtime is the last write). A live keeper whose worker is being started again
    keeps its folder."""
    from experiments_manager.federated.worker_protocol import read_status
    from experiments_manager.utils.signals import process_alive

    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        try:
            info = folder.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or time.time() - info.st_mtime <= older_than:
            continue
        status = read_status(folder) or {}
        if not process_alive(status.get("pid")) and not process_alive(_keeper_pid(folder)):
            shutil.rmtree(folder, ignore_errors=True)


def _keeper_pid(folder: PathLike) -> Optional[int]:
    try:
        return int((Path(folder) / KEEPER_PID_NAME).read_text())
    except (OSError, ValueError):
        return None


def start_keeper(supernode_pid: Optional[int] = None) -> Path:
    """Creates the worker folder and starts the keeper as a child of this process; returns the folder.

    Call it just before this process becomes the SuperNode (`os.execve`): the keeper watches this pid.

    Args:
        supernode_pid: the pid to watch (default: this process').

    Example:

    ```python
    folder = start_keeper()
    os.execve(flower_supernode, argv, {**os.environ, FOLDER_VARIABLE: str(folder)})
    ```
    """
    from experiments_manager.federated.worker_protocol import socket_path
    from experiments_manager.utils.errors import UserInputError

    remove_stale_folders()
    folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))  # 0700: only this user reaches the socket
    if len(os.fsencode(socket_path(folder))) > MAX_SOCKET_PATH_BYTES:
        folder.rmdir()
        raise UserInputError(f"the SuperNode's worker socket {socket_path(folder)} would be longer than a Unix "
                             f"socket path may be ({MAX_SOCKET_PATH_BYTES} bytes): set TMPDIR to a shorter folder")
    keeper = subprocess.Popen([*python_command(), "-m", "experiments_manager.federated.keeper", str(folder),
                               str(supernode_pid or os.getpid())], close_fds=True)
    (folder / KEEPER_PID_NAME).write_text(str(keeper.pid))  # `remove_stale_folders` leaves a live keeper's folder
    return folder


class Keeper:
    """Keeps one worker running in `folder` while the process `supernode_pid` (its parent) lives.

    Args:
        folder: the SuperNode's worker folder (removed when the keeper ends).
        supernode_pid: the SuperNode's pid, the keeper's parent.

    Example:

    ```python
    Keeper(folder, os.getppid()).run()   # returns when the SuperNode is gone or on SIGTERM / SIGINT
    ```
    """

    def __init__(self, folder: PathLike, supernode_pid: int) -> None:
        self.folder = Path(folder)
        self.supernode_pid = supernode_pid
        self.worker: Optional[subprocess.Popen[bytes]] = None
        self.starts = 0
        self.stopping = SignalSafeEvent()  # set by a signal handler

    def run(self) -> None:
        last_start, restart_pause = -RESTART_PAUSE_SECONDS, RESTART_PAUSE_SECONDS
        try:
            with signal_handlers(lambda signum, frame: self.stopping.set()):
                while not self.stopping.is_set() and os.getppid() == self.supernode_pid:
                    if self.worker is None or self.worker.poll() is not None:
                        if self.worker is not None:
                            lived = time.monotonic() - last_start
                            # one that cannot start (a broken install) is not started again in a hot loop
                            restart_pause = (RESTART_PAUSE_SECONDS if lived > STABLE_SECONDS
                                             else min(2 * restart_pause, MAX_RESTART_PAUSE_SECONDS))
                            _LOG.warning("Federated worker %d exited (%s) after %.0f s: starting it again in %.0f s",
                                         self.worker.pid, _exit_reason(self.worker.returncode), lived,
                                         max(0.0, last_start + restart_pause - time.monotonic()))
                        pause = last_start + restart_pause - time.monotonic()
                        if pause > 0 and self.stopping.wait(pause):
                            break
                        last_start = time.monotonic()
                        self._start_worker()
                    self.stopping.wait(CHECK_SECONDS)
        finally:
            self._stop_worker()
            shutil.rmtree(self.folder, ignore_errors=True)

    def _start_worker(self) -> None:
        self.starts += 1
        self.worker = subprocess.Popen(
            [*python_command(), "-m", "experiments_manager.federated.supernode_worker", str(self.folder),
             str(os.getpid())],
            close_fds=True)

    def _stop_worker(self) -> None:
        worker = self.worker
        if worker is None or worker.poll() is not None:
            return
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _exit_reason(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m experiments_manager.federated.keeper FOLDER SUPERNODE_PID`."""
    from experiments_manager.utils.logging_setup import configure_logging

    folder, supernode_pid = (argv if argv is not None else sys.argv[1:])[:2]
    configure_logging()
    Keeper(folder, int(supernode_pid)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
