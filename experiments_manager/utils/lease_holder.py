"""Who holds a lease, and whether it is provably gone: the record `lease.json` holds (`Holder`, its one typed
definition), what one process has seen of other holders' heartbeats (`LeaseWatch`, timed by its own monotonic
clock), and the lease timeout (EXPERIMENTS_MANAGER_LEASE_TIMEOUT). The rules are `lease.py`'s (its docstring):
a holder on this host is judged by its pid, a holder elsewhere only by a heartbeat watched standing still for the
timeout; clocks of different hosts are never compared.

Example:

```python
holder = live_holder("experiments/curve_fitting/my_run/lease.json")  # None: no live writer
holder.describe() if holder else "free"
```
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from experiments_manager.utils.atomic import PathLike
from experiments_manager.utils.errors import UserInputError
from experiments_manager.utils.signals import process_alive, process_stat_fields

TIMEOUT_VARIABLE = "EXPERIMENTS_MANAGER_LEASE_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 300.0
MIN_TIMEOUT_SECONDS = 10.0  # EXPERIMENTS_MANAGER_LEASE_TIMEOUT's floor: a beat every 1.7 s, seen up to ~2 s late
WATCHED_VARIABLE = "EXPERIMENTS_MANAGER_LEASE_WATCHED"  # a parent's watch of a holder, handed to its child process


@dataclass
class Holder:
    """Who holds a lease: what `lease.json` records (its one typed definition)."""

    host: str
    pid: int
    boot_id: Optional[str] = None
    process_start: Optional[int] = None  # the pid's start time in clock ticks since boot (/proc/PID/stat)
    slurm_job_id: Optional[str] = None
    slurm_restart_count: int = 0
    command: list[str] = field(default_factory=list)
    started: str = ""
    heartbeat: float = 0.0  # time.time() of the last renewal
    token: str = ""
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS  # the holder's own: a reader judges by the longer of the two
    pid_namespace: Optional[str] = None  # /proc/self/ns/pid: a pid means something only inside its namespace

    @classmethod
    def of_this_process(cls, command: Sequence[str] = (), timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> "Holder":
        now = time.time()
        return cls(host=socket.gethostname(), pid=os.getpid(), boot_id=boot_id(), process_start=process_start(os.getpid()),
                   slurm_job_id=os.environ.get("SLURM_JOB_ID"),
                   slurm_restart_count=int(os.environ.get("SLURM_RESTART_COUNT") or 0), command=list(command),
                   started=datetime.datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds"),
                   heartbeat=now, token=uuid.uuid4().hex, timeout_seconds=timeout_seconds,
                   pid_namespace=pid_namespace())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Holder":
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)

    def describe(self) -> str:
        slurm = f", Slurm job {self.slurm_job_id}" if self.slurm_job_id else ""
        age = max(0.0, time.time() - self.heartbeat)
        return f"pid {self.pid} on host {self.host}{slurm}, since {self.started}, heartbeat {age:.0f} s ago"

    def age(self) -> float:
        """Seconds since the last heartbeat by this host's clock: for display and as a reason to watch, never as
        proof (the holder's clock may differ from this host's)."""
        return time.time() - self.heartbeat

    def gone_because(self, timeout_seconds: float, watch: Optional["LeaseWatch"] = None) -> Optional[str]:
        """Why this holder is provably gone, or None while it may be alive.

        Args:
            timeout_seconds: how long a heartbeat must stay unchanged (the longer of this and the holder's own).
            watch: what this process has seen of the heartbeat (`LeaseWatch`); without one, a holder on another
                host is never judged gone (one look proves nothing across clocks).
        """
        timeout_seconds = max(timeout_seconds, self.timeout_seconds or 0)
        if self.is_local():
            if not process_alive(self.pid):
                return f"pid {self.pid} on this host is dead"
            start = process_start(self.pid)
            if self.process_start is not None and start is not None and start != self.process_start:
                return f"pid {self.pid} on this host is another process now"
            return None
        if self.host == socket.gethostname() and self.boot_id and boot_id() and self.boot_id != boot_id():
            return "this host rebooted since"
        job, restarts = os.environ.get("SLURM_JOB_ID"), int(os.environ.get("SLURM_RESTART_COUNT") or 0)
        if job and self.slurm_job_id == job and restarts > self.slurm_restart_count:
            return f"Slurm job {job} was restarted since (restart {restarts})"
        if watch is not None:
            unchanged = watch.unchanged_for(self)
            if unchanged >= timeout_seconds:
                return (f"its heartbeat did not change for {unchanged:.0f} s while this host watched (timeout "
                        f"{timeout_seconds:.0f} s)")
        return None

    def looks_stale(self, timeout_seconds: float) -> bool:
        """On another host, its heartbeat two beats late (a third of the timeout, the longer of the two) by this
        host's clock: a reason to watch it, never proof that it is gone."""
        return not self.is_local() and self.age() > max(timeout_seconds, self.timeout_seconds or 0) / 3

    def is_local(self) -> bool:
        """Whether its pid can be checked here (this host, this boot, this pid namespace: a pid means something
        only inside its own; elsewhere only the heartbeat tells)."""
        same_pids = self.pid_namespace is None or self.pid_namespace == pid_namespace()
        return self.host == socket.gethostname() and self.boot_id == boot_id() and same_pids


class LeaseWatch:
    """What one process has seen of other holders' heartbeats, timed by its own monotonic clock: a heartbeat that
    stays the same for the timeout while watched belongs to a holder that stopped renewing, whatever either
    host's wall clock says. One per long-lived reader (a sweep worker's store, one `acquire`).

    Example:

    ```python
    watch = LeaseWatch()
    holder = live_holder(claim, watch=watch)  # None once its heartbeat stood still for the timeout
    ```
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[object, float]] = {}  # key -> (what was seen, monotonic time first seen)

    @classmethod
    def inherited(cls) -> "LeaseWatch":
        """A watch that starts with what the parent process had seen (`handed_down`): a child on the same host
        (one boot, one monotonic clock) does not watch a gone holder's heartbeat a second time."""
        watch = cls()
        try:
            handed = json.loads(os.environ.get(WATCHED_VARIABLE) or "{}")
            if handed.get("boot_id") == boot_id():
                for token, (heartbeat, since) in handed["seen"].items():
                    watch._seen[str(token)] = (float(heartbeat), float(since))
        except (ValueError, TypeError, KeyError, AttributeError):  # not ours: a watch of its own
            pass
        return watch

    def handed_down(self, holder: Holder) -> dict[str, str]:
        """The environment variable that hands this watch's view of `holder`'s heartbeat to a child process started
        on this host (its `Lease.acquire` starts from it: `inherited`); {} when this watch has not seen it."""
        seen = self._seen.get(holder.token)
        if seen is None:
            return {}
        return {WATCHED_VARIABLE: json.dumps({"boot_id": boot_id(), "seen": {holder.token: list(seen)}})}

    def unchanged_for(self, holder: Holder) -> float:
        """Seconds this watch has seen `holder`'s current heartbeat unchanged (0 the first time)."""
        return self._unchanged(holder.token, holder.heartbeat)

    def file_unchanged_for(self, path: Path) -> Optional[float]:
        """Seconds this watch has seen the file at `path` unchanged (its inode, size and modification time, whatever
        clock wrote that time; 0 the first time), or None when there is no file."""
        try:
            status = path.stat()
        except FileNotFoundError:
            return None
        return self._unchanged(f"file {path}", (status.st_ino, status.st_size, status.st_mtime_ns))

    def _unchanged(self, key: str, value: object) -> float:
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is None or seen[0] != value:
            self._seen[key] = (value, now)
            return 0.0
        return now - seen[1]


def read_holder(path: PathLike) -> Optional[Holder]:
    """The holder a lease file names, or None when it is absent or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
        return Holder.from_json(data) if isinstance(data, dict) else None
    except (OSError, ValueError, TypeError):
        return None


def live_holder(path: PathLike, timeout_seconds: Optional[float] = None,
                watch: Optional[LeaseWatch] = None) -> Optional[Holder]:
    """The holder of the lease at `path` while it may be alive (not provably gone), else None. Without a `watch`
    (`LeaseWatch`), a holder on another host is taken to be alive."""
    holder = read_holder(path)
    timeout = lease_timeout() if timeout_seconds is None else float(timeout_seconds)
    return holder if holder is not None and holder.gone_because(timeout, watch) is None else None


def lease_timeout() -> float:
    """The heartbeat age past which another host's holder is taken for dead (EXPERIMENTS_MANAGER_LEASE_TIMEOUT)."""
    text = os.environ.get(TIMEOUT_VARIABLE)
    if not text:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        value = float(text)
    except ValueError:
        raise UserInputError(f"{TIMEOUT_VARIABLE}: expected a number of seconds >= {MIN_TIMEOUT_SECONDS:.0f}, "
                             f"got {text!r}") from None
    if not value >= MIN_TIMEOUT_SECONDS:
        raise UserInputError(f"{TIMEOUT_VARIABLE}: expected at least {MIN_TIMEOUT_SECONDS:.0f} seconds (a heartbeat "
                             f"is renewed every sixth of it and other nodes see it up to ~2 s late), got {text!r}")
    return value


def boot_id() -> Optional[str]:
    """This host's boot id (Linux), or None."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def pid_namespace() -> Optional[str]:
    """This process' pid namespace (Linux: 'pid:[4026531836]'), or None: pids compare only within one."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_start(pid: int) -> Optional[int]:
    """The start time of process `pid` in clock ticks since boot (Linux), or None: tells a reused pid apart."""
    fields = process_stat_fields(pid)
    try:
        return int(fields[19]) if fields is not None else None
    except (ValueError, IndexError):
        return None
