"""One writer per folder: a lease file (`lease.json`) that a run takes before it writes an experiment or a sweep.

Cluster file systems (NFS, Lustre, GPFS) do not make `flock` reliable across nodes, so the lease is a file
created whole in one step: its content is written to a temporary file, fsynced, then hard-linked to
`lease.json` (`link` fails when the name exists, atomically on every shared file system; where a file system
has no hard links, `O_CREAT | O_EXCL`). It names its holder: host, boot id, pid and the pid's start time, Slurm
job, start, and a heartbeat that a thread renews every `heartbeat_seconds`.

A lease is broken only when its holder is provably gone:
- on this host (same boot): its pid is dead (or ended and not yet reaped: a zombie), or now belongs to another process
  (another start time);
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

The pieces: `lease_holder.py` (the record and its judging: `Holder`, `LeaseWatch`, the timeout),
`exclusive_create.py` (a file created whole in one step), and here taking, breaking, the heartbeat and the fence.

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

import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Sequence

from experiments_manager.utils.atomic import PathLike, write_json_atomically
from experiments_manager.utils.errors import EXIT_TEMPFAIL, UserInputError
from experiments_manager.utils.exclusive_create import create_whole
from experiments_manager.utils.lease_holder import Holder, LeaseWatch, lease_timeout, live_holder, read_holder

_LOG = logging.getLogger(__name__)
LEASE_NAME = "lease.json"
FENCE_FRACTION = 2 / 3  # a holder whose own last renewal is older than this part of the timeout writes nothing more
BREAK_GRACE_SECONDS = 60.0  # a break lock unchanged this long was left by a breaker that died in its milliseconds


class LeaseHeld(UserInputError):
    """Another live writer holds the folder: one line naming it; exit code 75 (try again later)."""

    exit_code = EXIT_TEMPFAIL


class LeaseLost(UserInputError):
    """This run's lease was taken over (it stalled past the timeout: a frozen node, a stopped process): it stops
    without writing anything more to the folder. One line; exit code 75."""

    exit_code = EXIT_TEMPFAIL


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
