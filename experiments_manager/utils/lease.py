"""One writer per folder: a lease file (`lease.json`) that a run takes before it writes an experiment or a sweep.

Cluster file systems (NFS, Lustre, GPFS) do not make `flock` reliable across nodes, so the lease is a file
created whole in one step: its content is written to a temporary file, fsynced, then hard-linked to
`lease.json` (`link` fails when the name exists, atomically on every shared file system; where a file system
has no hard links, `O_CREAT | O_EXCL`). It names its holder: host, boot id, pid and the pid's start time, Slurm
job, start, and a heartbeat that a thread renews every `heartbeat_seconds`.

A lease is broken only when its holder is provably gone:
- on this host (same boot): its pid is dead, or now belongs to another process (another start time);
- on this host after a reboot (another boot id);
- the same Slurm job, restarted (a requeued job starts only once its previous run ended);
- elsewhere: its heartbeat did not change for `timeout_seconds` (default 300 s, or
  EXPERIMENTS_MANAGER_LEASE_TIMEOUT) while this process watched it, timed by this process' own monotonic clock
  (`LeaseWatch`). The heartbeat's wall-clock time, written by the holder's clock, is never compared with this
  host's: nodes' clocks may differ by minutes. A heartbeat that looks old by this host's clock is only the reason
  to start watching.
The holder fences itself first: once its own last renewal is older than `FENCE_FRACTION` of the timeout (its
monotonic clock: a frozen node, a stopped process), `check` refuses every write, so the writer that stalled has
stopped before any watcher can take over. The timeout has a floor (`MIN_TIMEOUT_SECONDS`): a live holder's
heartbeat, renewed every sixth of it, must be seen changing by other nodes, whose view of a file lags by up to
~2 s on a cluster file system (measured on GlusterFS; NFS attribute caches hold 3-60 s unless `actimeo` is lower).
Breaking takes a second, short lock (`lease.json.break`, same protocol, itself broken once it stood unchanged for
`BREAK_GRACE_SECONDS` while watched), checks the stale lease is still the one judged gone, and replaces it by the
breaker's own record in one rename (never removes it first), so two runs that find the same dead holder do not
both take over and a third arriving meanwhile meets the new holder. An unreadable lease (damaged) is broken once it
stood unchanged for the shorter of the timeout and that grace while watched: no file's time is compared with this
host's clock either.

Long because the protocol is one piece: the record, taking, judging, breaking, the heartbeat and the fence of a
holder that stalled (its `check` refuses every write once its own last renewal is older than `FENCE_FRACTION` of
the timeout).

Example:

```python
lease = Lease.acquire("experiments/curve_fitting/my_run", command=["train", "--resume", "..."])
try:
    ...  # write the experiment
finally:
    lease.release()
```
"""

from __future__ import annotations

import datetime
import errno
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from experiments_manager.utils.atomic import PathLike, fsync_file, fsync_folder, write_json_atomically
from experiments_manager.utils.errors import EXIT_TEMPFAIL, UserInputError
from experiments_manager.utils.signals import process_alive

_LOG = logging.getLogger(__name__)
LEASE_NAME = "lease.json"
TIMEOUT_VARIABLE = "EXPERIMENTS_MANAGER_LEASE_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 300.0
MIN_TIMEOUT_SECONDS = 10.0  # EXPERIMENTS_MANAGER_LEASE_TIMEOUT's floor: a beat every 1.7 s, seen up to ~2 s late
FENCE_FRACTION = 2 / 3  # a holder whose own last renewal is older than this part of the timeout writes nothing more
WATCHED_VARIABLE = "EXPERIMENTS_MANAGER_LEASE_WATCHED"  # a parent's watch of a holder, handed to its child process
BREAK_GRACE_SECONDS = 60.0  # a break lock unchanged this long was left by a breaker that died in its milliseconds


class LeaseHeld(UserInputError):
    """Another live writer holds the folder: one line naming it; exit code 75 (try again later)."""

    exit_code = EXIT_TEMPFAIL


class LeaseLost(UserInputError):
    """This run's lease was taken over (it stalled past the timeout: a frozen node, a stopped process): it stops
    without writing anything more to the folder. One line; exit code 75."""

    exit_code = EXIT_TEMPFAIL


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


class Lease:
    """A held lease on a folder; `acquire` takes one. Its heartbeat thread runs until `release`.

    Args:
        path: the lease file.
        holder: this process' `Holder` record.
        heartbeat_seconds: how often the heartbeat is renewed (default: a sixth of the timeout).
    """

    def __init__(self, path: Path, holder: Holder, heartbeat_seconds: float):
        self.path = Path(path)
        self.holder = holder
        self.heartbeat_seconds = heartbeat_seconds
        self.lost = threading.Event()  # set when another writer took the lease over (this one stalled too long)
        self._stop = threading.Event()
        self._writing = threading.Lock()  # the heartbeat's rewrite and `release` never overlap
        self._renewed = time.monotonic()  # the last heartbeat on disk: past the timeout, this run fences itself
        self._thread = threading.Thread(target=self._beat, name=f"lease-heartbeat {self.path.parent.name}",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def acquire(cls, folder: PathLike, command: Sequence[str] = (), timeout_seconds: Optional[float] = None,
                what: str = "folder", name: str = LEASE_NAME, durable: bool = True, announce: bool = True,
                watch: Optional[LeaseWatch] = None, patient: bool = True) -> "Lease":
        """Takes the lease of `folder`, breaking one whose holder is provably gone. A holder on another host whose
        heartbeat looks old by this host's clock is watched for the timeout first (one line says so): taken over
        if its heartbeat stood still all that time, refused if it moved.

        Args:
            folder: the folder to write (an experiment, a sweep).
            command: this process' command line, recorded for whoever is refused.
            timeout_seconds: a heartbeat older than this is a dead holder's (default: EXPERIMENTS_MANAGER_LEASE_TIMEOUT,
                else 300 s).
            what: the folder's kind in messages ('experiment', 'sweep').
            name: the lease file's name in `folder` (default `lease.json`; a sweep's trials and its short
                coordination lock have their own).
            durable: fsync the lease as it is created (default True); a short lock that no one needs after a
                crash (a crashed holder is gone anyway) skips it.
            announce: log one warning when a gone holder's lease is taken over (default True; a caller that
                says it in its own words passes False).
            watch: the caller's `LeaseWatch`, when it has been watching this lease already (default: a new one,
                with what a parent process handed down: `LeaseWatch.handed_down`).
            patient: watch a stale-looking holder elsewhere for the timeout, or an unreadable lease for the
                shorter of the timeout and `BREAK_GRACE_SECONDS` (default True); False refuses it at once unless
                `watch` has already seen it stand still that long (a caller that holds a lock meanwhile, or that
                must not wait).

        Raises:
            LeaseHeld: a live writer holds it (one line naming the holder).
        """
        timeout = lease_timeout() if timeout_seconds is None else float(timeout_seconds)
        path = Path(folder) / name
        holder = Holder.of_this_process(command, timeout_seconds=timeout)
        watch = watch or LeaseWatch.inherited()
        watching: Optional[Holder] = None  # the holder elsewhere whose heartbeat this call watches stand still
        tries = 0
        while tries < 5:
            if create_whole(path, asdict(holder), durable=durable):
                return cls(path, holder, heartbeat_seconds=max(0.05, timeout / 6))
            current = read_holder(path)
            if current is None:  # being written (a moment, without hard links) or damaged: watched standing still
                unchanged_for = watch.file_unchanged_for(path)
                if unchanged_for is None:
                    tries += 1
                elif unchanged_for < min(timeout, BREAK_GRACE_SECONDS):
                    if not patient:
                        raise LeaseHeld(f"{folder}: another run is starting to write this {what} ({path} cannot be "
                                        f"read yet); try again in a minute")
                    time.sleep(max(0.05, min(1.0, timeout / 12)))
                else:
                    taken = _take_over(path, None, f"{path} was unreadable", asdict(holder), announce, watch)
                    if taken:
                        return cls(path, holder, heartbeat_seconds=max(0.05, timeout / 6))
                    tries += taken is False  # None: a breaker at work, or one that died: not a try
                continue
            reason = current.gone_because(timeout, watch)
            if reason is None:
                longest = max(timeout, current.timeout_seconds or 0)
                moved = watching is not None and (watching.token, watching.heartbeat) != (current.token,
                                                                                         current.heartbeat)
                if not current.looks_stale(timeout) or moved or not patient:
                    raise LeaseHeld(f"{folder}: another run writes this {what}: {current.describe()}; wait for it "
                                    f"to end (or stop it) and try again")
                if watching is None:
                    _LOG.warning("%s: its lease's holder (%s) looks stale by this host's clock; watching its "
                                 "heartbeat for %.0f s before taking over (clocks of different hosts are not "
                                 "compared)", folder, current.describe(), longest)
                watching = current
                time.sleep(max(0.05, min(1.0, longest / 12)))
                continue
            taken = _take_over(path, current, f"the writer that held it is gone: {reason}", asdict(holder), announce,
                               watch)
            if taken:
                return cls(path, holder, heartbeat_seconds=max(0.05, timeout / 6))
            tries += taken is False  # None: a breaker at work, or one that died: not a try
        raise LeaseHeld(f"{folder}: could not take {path}: other runs keep taking it; try again")

    @classmethod
    def wait(cls, folder: PathLike, name: str, patience_seconds: float, command: Sequence[str] = (),
             timeout_seconds: Optional[float] = None, what: str = "folder", durable: bool = True) -> "Lease":
        """`acquire`, retried while a live holder has it (a short lock: held for a moment by each taker), for up
        to `patience_seconds`; then `LeaseHeld`. Retries back off from 2 ms to 50 ms, with jitter.

        Args:
            folder: the folder of the lock file.
            name: the lock file's name.
            patience_seconds: how long to wait for a live holder.
            command, timeout_seconds, what, durable: as `acquire`'s.

        Example:

        ```python
        with Lease.wait(sweep_root, "sweep.lock", 600, timeout_seconds=60) as lock:
            ...  # read, decide, write: no other worker does at the same time
        ```
        """
        deadline = time.monotonic() + patience_seconds
        pause = 0.002
        watch = LeaseWatch()
        while True:
            if live_holder(Path(folder) / name, timeout_seconds, watch) is None or time.monotonic() > deadline:
                try:  # (a look first: a waiter reads the lock, it does not write and link a file every try)
                    return cls.acquire(folder, command, timeout_seconds=timeout_seconds, what=what, name=name,
                                       durable=durable, watch=watch)
                except LeaseHeld:
                    if time.monotonic() > deadline:
                        holder = read_holder(Path(folder) / name)
                        raise LeaseHeld(f"{folder}: its lock {name} was held for more than {patience_seconds:.0f} s "
                                        f"by {holder.describe() if holder else 'another process'}: if that process "
                                        "is stuck (stopped, suspended), end it; then try again") from None
            time.sleep(pause * (0.5 + random.random()))
            pause = min(0.05, pause * 2)

    def fenced(self) -> bool:
        """Whether this process must write nothing more (no file-system access: cheap enough before every log
        line): the lease was taken over, or this process' own last renewal is older than `FENCE_FRACTION` of the
        timeout (a frozen node, a stopped process: a watcher elsewhere may take over once the whole timeout has
        passed)."""
        if time.monotonic() - self._renewed > self.holder.timeout_seconds * FENCE_FRACTION:
            self.lost.set()
        return self.lost.is_set()

    def check(self) -> None:
        """Raises `LeaseLost` when `fenced`: called before each write into the folder."""
        if self.fenced():
            current = read_holder(self.path)
            where = self.path.parent if self.path.name == LEASE_NAME else self.path  # a folder's, or a trial's claim
            if current is not None and current.token == self.holder.token:
                raise LeaseLost(f"{where}: this run's heartbeat stalled (not renewed for "
                                f"{time.monotonic() - self._renewed:.0f} s; lease timeout "
                                f"{self.holder.timeout_seconds:.0f} s): another run may take the folder over; "
                                "stopping without writing more")
            raise LeaseLost(f"{where}: another run took this over "
                            f"({current.describe() if current else 'its lease is gone'}) while this one stalled "
                            "past the lease timeout: stopping without writing more")

    def release(self) -> None:
        """Stops the heartbeat and removes the lease if it is still this process' own."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        with self._writing:
            current = read_holder(self.path)
            if current is not None and current.token == self.holder.token:
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                except OSError as error:  # a full or read-only disk at the end: the next run judges the pid dead
                    _LOG.warning("%s: could not remove the lease (%s)", self.path, error.strerror)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            with self._writing:
                if self._stop.is_set():
                    return
                if time.monotonic() - self._renewed > self.holder.timeout_seconds * FENCE_FRACTION:
                    self._lose("this run stalled: its heartbeat was not renewed for "
                               f"{time.monotonic() - self._renewed:.0f} s")  # a watcher elsewhere may take over soon
                    return
                current = read_holder(self.path)
                if current is None and self.path.exists():
                    continue  # unreadable for a moment (a busy network file system): looked at again next beat
                if current is None or current.token != self.holder.token:
                    self._lose(f"another run writes this folder now: {current.describe()}" if current
                               else "its lease file was removed")
                    return
                self.holder.heartbeat = time.time()
                try:
                    write_json_atomically(self.path, asdict(self.holder))
                    self._renewed = time.monotonic()
                except OSError as error:  # a full disk: retried at the next beat
                    _LOG.warning("%s: heartbeat not written (%s)", self.path, error.strerror)

    def _lose(self, why: str) -> None:
        if not self.lost.is_set():
            self.lost.set()
            _LOG.error("%s: this run lost its lease (%s): it writes nothing more there", self.path.parent, why)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


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
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def create_whole(path: Path, data: dict[str, Any], durable: bool = True) -> bool:
    """Creates `path` holding `data` in one step (fsynced, with its folder, when `durable`); False when it exists."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    try:
        if durable:
            fsync_file(tmp)
        try:
            os.link(tmp, path)
        except (FileExistsError, FileNotFoundError):  # taken; or the holder cleaned our temporary file away
            try:  # NFS may answer a retransmitted link that succeeded with EEXIST: the link count tells
                if os.stat(tmp).st_nlink != 2:
                    return False
            except FileNotFoundError:
                return False
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
            return _create_exclusive(path, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        fsync_folder(path.parent)
    return True


def _create_exclusive(path: Path, content: bytes) -> bool:
    """`O_CREAT | O_EXCL` for file systems without hard links (a reader may see it empty for a moment)."""
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_folder(path.parent)
    return True


def _take_over(path: Path, stale: Optional[Holder], reason: str, data: dict[str, Any], announce: bool,
               watch: LeaseWatch) -> Optional[bool]:
    """Replaces the stale lease at `path`, if it still is `stale` (its token and heartbeat; None: unreadable), by
    `data` in one rename, under the break lock: there is no moment without a lease, so a run that arrives meanwhile
    meets the new holder. False when the lease changed (the caller looks again); None when another breaker holds
    the break lock (at work for milliseconds; `watch` breaks a lock that stood unchanged for the grace)."""
    lock = path.with_name(path.name + ".break")
    if not create_whole(lock, {"pid": os.getpid(), "host": socket.gethostname()}):
        try:
            unchanged_for = watch.file_unchanged_for(lock)
            # its breaker died: only that lock goes
            if unchanged_for is not None and unchanged_for > BREAK_GRACE_SECONDS:
                watched = lock.stat()
                moved = lock.with_name(f".{lock.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
                os.rename(lock, moved)  # one breaker wins the rename
                now = moved.stat()
                if (now.st_ino, now.st_mtime_ns) != (watched.st_ino, watched.st_mtime_ns):  # a new one, just taken
                    try:
                        os.link(moved, lock)  # put back, unless yet another lock is there now
                    except FileExistsError:
                        pass
                moved.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        time.sleep(0.05)  # another breaker works for a few milliseconds: look again
        return None
    try:
        current = read_holder(path)
        seen = (current.token, current.heartbeat) if current else None
        if seen != ((stale.token, stale.heartbeat) if stale else None) or not path.exists():
            return False
        write_json_atomically(path, data)
        if announce:
            _LOG.warning("%s: took over the lease: %s", path.parent, reason)
        return True
    finally:
        lock.unlink(missing_ok=True)
