"""One record per trial in `<sweep>/trials/`: the experiment a set of hparams trains, and how it ended.

hyperopt's Trials only learn a result when a trial returns. The journal is
written while a trial runs, so a sweep stopped mid-trial knows on resume which
experiment to continue, and a trial that finished just before the stop is not
trained twice.
"""

import hashlib
import json
import os
from pathlib import Path

from experiments_manager.utils.atomic import write_json_atomically
from experiments_manager.utils.signals import process_alive

RECORD_STATUSES = ("running", "finished", "failed", "interrupted")


class TrialJournal:
    """The `trials/` folder of a sweep.

    Records are keyed by the trial's sampled hparams, which is what a trial
    knows about itself (hyperopt hands the objective a sample, not a trial id).

    Args:
        folder: `<sweep>/trials`.

    Example:

    ```python
    journal = TrialJournal(sweep_root / "trials")
    with journal.claim({"learningRate": 0.01}) as record:
        record.update(status="running", pid=process.pid)
    ```
    """

    def __init__(self, folder):
        self.folder = Path(folder)

    def claim(self, hparams):
        """The record of these hparams, locked for this process until released.

        A second trial with the same hparams running at the same time (hyperopt
        may suggest a point twice) gets a record of its own.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        key = hparams_key(hparams)
        for attempt in range(1000):
            name = key if attempt == 0 else f"{key}-{attempt}"
            record = TrialRecord(self.folder / f"{name}.json", hparams)
            if record.lock():
                return record
        raise RuntimeError(f"{self.folder}: could not lock a record for {hparams}")

    def records(self):
        return [TrialRecord(path) for path in sorted(self.folder.glob("*.json"))]

    def release_stale_locks(self):
        """Removes the locks of processes that no longer run (a killed sweep leaves them)."""
        for lock in self.folder.glob("*.lock"):
            if not process_alive(_read_pid(lock)):
                lock.unlink(missing_ok=True)

    def signal_running(self, signum):
        """Sends `signum` to every trial process still running (each checkpoints and stops)."""
        for record in self.records():
            info = record.read()
            if info.get("status") == "running" and process_alive(info.get("pid")):
                try:
                    os.killpg(info["pid"], signum)
                except OSError:
                    pass


class TrialRecord:
    """`trials/<key>.json` (the record), `<key>.log` (the trial's output), `<key>.lock` (who runs it).

    Args:
        path: the record file.
        hparams: the trial's sampled hparams (written with the first update).
    """

    def __init__(self, path, hparams=None):
        self.path = Path(path)
        self.hparams = hparams

    @property
    def log_path(self):
        return self.path.with_suffix(".log")

    @property
    def lock_path(self):
        return self.path.with_suffix(".lock")

    def read(self):
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def update(self, **fields):
        info = self.read()
        if self.hparams is not None:
            info.setdefault("hparams", self.hparams)
        if "status" in fields and fields["status"] not in RECORD_STATUSES:
            raise ValueError(f"unknown trial status {fields['status']!r}")
        info.update(fields)
        write_json_atomically(self.path, info)
        return info

    def lock(self):
        """True when this process now owns the record; a lock left by a dead process is taken over."""
        for _ in range(2):
            try:
                descriptor = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if process_alive(_read_pid(self.lock_path)):
                    return False
                self.lock_path.unlink(missing_ok=True)
                continue
            with os.fdopen(descriptor, "w") as handle:
                handle.write(str(os.getpid()))
            return True
        return False

    def release(self):
        self.lock_path.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()


def hparams_key(hparams):
    """A short, stable file name for a set of hparams."""
    text = json.dumps(hparams, sort_keys=True, default=str)
    return "trial-" + hashlib.sha1(text.encode()).hexdigest()[:12]


def _read_pid(path):
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None
