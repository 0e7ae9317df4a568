"""One record per trial in `<sweep>/trials/`: which point it trains, who trains it, its experiment, how it ended.

hyperopt's Trials only learn a result when a trial returns. The journal is written while a trial runs, so a
sweep stopped mid-trial knows which experiment to continue, and a trial that finished just before the stop is not
trained twice. In a sweep run by workers (`sweeps/store.py`) the journal is the sweep's shared state: each record
is `trial-NNNN.json` (the trial's number), written whole by one writer at a time (temporary file, fsync, rename),
and `trial-NNNN.lock` is the claim of the worker that trains it (a `utils/lease.py` lease: its heartbeat, broken
only when that worker is provably gone). An older engine's sweep (hyperopt's fmin, on Spark or not) keyed its
records by the sampled hparams instead (`trial-<hash>.json`, read by `legacy.py`): its objective had a sample, not a
trial id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

from experiments_manager.utils.atomic import write_json_atomically
from experiments_manager.utils.exclusive_create import create_whole
from experiments_manager.utils.lease import Lease, LeaseHeld
from experiments_manager.utils.lease_holder import LeaseWatch
from experiments_manager.sweeps.trial_state import TrialState, state_of

if TYPE_CHECKING:
    from experiments_manager.utils.atomic import PathLike

SCHEDULE_FIELDS = ("bracket", "epochs_target", "epochs_trained", "rung_values", "promotions")  # a scheduler's


@dataclasses.dataclass
class TrialEntry:
    """What `trials/<name>.json` records of one trial: the journal's one typed definition.

    Args:
        hparams: the trial's sampled hparams, as the trial trains them.
        tid: hyperopt's trial id (the trial's number - 1); None in an older engine's records.
        vals: hyperopt's `misc.vals` of the suggestion (what TPE learns from); None in an older engine's records.
        status: the trial's `TrialState` (`trial_state.py`: running, paused, promoted, finished, failed,
            interrupted); its record holds the state's word.
        experiment: the trial's experiment folder, once created.
        worker: who trains it now (or last did): host, pid, Slurm job and array task.
        takeovers: how many times another worker took it over from one that was gone.
        pid: the pid of the process training it (its worker's trial host) while it trains; None once it ended.
        loss: what hyperopt minimises (the best value, negated when the monitored value is maximised).
        same_as: the trial number whose result this one reused (hyperopt suggested the same point again).
        bracket: with a scheduler, the trial's bracket (0 for ASHA).
        epochs_target: with a scheduler, the epochs the trial trains to now (its current rung).
        epochs_trained: the epochs its experiment has trained, as it last ended.
        rung_values: with a scheduler, its loss (as `loss`) at each rung it reached, by the rung's epochs.
        promotions: how many times it was promoted to a next rung.
    """

    hparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    tid: Optional[int] = None
    vals: Optional[dict[str, list[Any]]] = None
    status: TrialState = TrialState.RUNNING
    experiment: Optional[str] = None
    worker: Optional[dict[str, Any]] = None
    takeovers: int = 0
    pid: Optional[int] = None
    started: Optional[str] = None
    ended: Optional[str] = None
    log: Optional[str] = None
    resumed: bool = False
    exit_code: Optional[int] = None
    reason: Optional[str] = None
    best_value: Optional[float] = None
    best_epoch: Optional[int] = None
    seconds: Optional[float] = None
    loss: Optional[float] = None
    same_as: Optional[int] = None
    bracket: Optional[int] = None
    epochs_target: Optional[int] = None
    epochs_trained: Optional[int] = None
    rung_values: dict[str, Optional[float]] = dataclasses.field(default_factory=dict)
    promotions: int = 0

    @classmethod
    def from_json(cls, data: RecordJSON) -> "TrialEntry":
        """The entry of a record's JSON; keys it does not know (a newer engine's) are left out.

        Raises:
            ValueError: its `status` names no `TrialState`.
        """
        fields = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        if "status" in fields:
            state = state_of(fields["status"])
            if state is None:
                raise ValueError(f"status: expected one of {', '.join(TrialState)}, got {fields['status']!r}")
            fields["status"] = state
        return cls(**fields)

    @property
    def done(self) -> bool:
        """Ended with a result (finished, failed, paused at a rung), its worker's tell complete."""
        return self.status.done and not self.rung_value_pending

    @property
    def final(self) -> bool:
        """Done for good: its record is never written again (a paused trial may still be promoted)."""
        return self.status.final and not self.rung_value_pending

    @property
    def rung_value_pending(self) -> bool:
        """A scheduler's trial that trained to its rung, its value there not recorded yet: the worker's tell is
        under way (`SweepStore.record_result`), or the worker died before it (the next worker to ask settles it)."""
        return (self.status == TrialState.FINISHED and self.epochs_target is not None
                and str(self.epochs_target) not in self.rung_values)

    @property
    def rung(self) -> Optional[int]:
        """The epochs of the last rung it reached (a scheduler's), or None."""
        return max((int(epochs) for epochs in self.rung_values), default=None)

    @property
    def number(self) -> Optional[int]:
        """The trial's number as users read it (from 1)."""
        return None if self.tid is None else self.tid + 1


class TrialJournal:
    """The `trials/` folder of a sweep.

    Args:
        folder: `<sweep>/trials`.

    Example:

    ```python
    journal = TrialJournal(sweep_root / "trials")
    for record, entry in journal.numbered():
        print(record.path.name, entry.status)
    ```
    """

    def __init__(self, folder: PathLike) -> None:
        self.folder = Path(folder)
        # record path -> its entry, once final: a final record is never written again
        self._done: dict[Path, TrialEntry] = {}

    def create(self, entry: TrialEntry) -> Optional["TrialRecord"]:
        """Writes the record of a new numbered trial whole, only if none has its number (`link`: atomic on
        shared file systems); None when one has. Only for a hyperopt trial (its `tid` set)."""
        if entry.tid is None:
            raise ValueError("TrialJournal.create: a numbered record needs the trial's tid, got None")
        self.folder.mkdir(parents=True, exist_ok=True)
        record = TrialRecord(self.folder / numbered_name(entry.tid), entry.hparams)
        if not create_whole(record.path, dataclasses.asdict(entry)):
            return None
        return record

    def records(self) -> list[TrialRecord]:
        return [TrialRecord(path) for path in sorted(self.folder.glob("*.json"))]

    def numbered(self) -> list[TrialPair]:
        """(record, entry) of every numbered trial (a sweep run by workers), by trial id."""
        return self.scan()[0]

    def scan(self) -> tuple[list[TrialPair], list[DamagedRecord]]:
        """(the numbered trials' (record, entry) pairs by trial id, (record, tid, why) of each numbered record whose
        content is damaged: `TrialRecord.parsed`), reading each record once, a final one not at all (it never
        changes again); `sweeps/record_repair.py` restores or sets aside the damaged ones."""
        pairs: list[TrialPair] = []
        damaged: list[DamagedRecord] = []
        for path in self.folder.glob("trial-[0-9]*.json"):
            record = TrialRecord(path)
            entry = self._done.get(path)
            if entry is None:
                data, why = record.parsed()
                entry, why = (None, why) if why is not None else _entry_and_problem(data)
                digits = path.stem[len("trial-"):]
                if why is not None and digits.isdigit() and numbered_name(int(digits) - 1) == path.name:
                    damaged.append((record, int(digits) - 1, why))
            if entry is not None and entry.tid is not None:
                pairs.append((record, entry))
                if entry.final:
                    self._done[path] = entry
        return (sorted(pairs, key=lambda pair: cast(int, pair[1].tid)),  # (each pair's tid is set)
                sorted(damaged, key=lambda found: found[1]))


class TrialRecord:
    """`trials/<name>.json` (the record), `<name>.log` (the trial's output), `<name>.lock` (who trains it).

    Args:
        path: the record file.
        hparams: the trial's sampled hparams (written with the first update).
    """

    def __init__(self, path: PathLike, hparams: Optional[dict[str, Any]] = None) -> None:
        self.path = Path(path)
        self.hparams = hparams
        self._claim: Optional[Lease] = None

    @property
    def log_path(self) -> Path:
        return self.path.with_suffix(".log")

    @property
    def lock_path(self) -> Path:
        return self.path.with_suffix(".lock")

    def read(self) -> RecordJSON:
        return self.parsed()[0]

    def parsed(self) -> tuple[RecordJSON, Optional[str]]:
        """(the record's JSON object, or {} when there is none; why its content is damaged, or None when it is an
        object or cannot be read now: an I/O error, a name a network file system shows before its content, is not
        damage), from one read. Its `experiment` is read as a name in the sweep's folder (a trial's experiment is
        made there): a path leading elsewhere is never followed, and a sweep folder moved whole still finds its
        trials."""
        try:
            content = self.path.read_bytes()
        except OSError:
            return {}, None
        try:
            data = json.loads(content)
        except ValueError:
            return {}, "NUL bytes, as after a power loss" if b"\0" in content else "not JSON"
        if not isinstance(data, dict):
            return {}, "not a JSON object"
        if data.get("experiment") is not None:
            name = Path(data["experiment"]).name if isinstance(data["experiment"], str) else ""
            data["experiment"] = str(self.path.parent.parent.resolve() / name) if name not in ("", ".", "..") else None
        return data, None

    def entry(self) -> Optional[TrialEntry]:
        """The typed record, or None when it is absent or unreadable."""
        return _entry_of(self.read())

    def update(self, **fields: Any) -> RecordJSON:
        """Rewrites the record with `fields` changed (whole, durably); only the claim's holder calls it.

        Raises:
            LeaseLost: this process held the claim and lost it (it stalled past the timeout and another worker
                took the trial over): the record is the new holder's now.
        """
        if self._claim is not None:
            self._claim.check()
        unknown = sorted(set(fields) - set(TrialEntry.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown trial record fields {unknown}")
        info = self.read()
        if "status" in fields:
            state, before = TrialState(fields["status"]), state_of(info.get("status"))
            if before is not None and not before.may_become(state):
                raise ValueError(f"{self.path}: a {before} trial cannot become {state} (trial_state.MOVES)")
        if self.hparams is not None:
            info.setdefault("hparams", self.hparams)
        info.update(fields)
        write_json_atomically(self.path, info)
        return info

    def lock(self, watch: Optional[LeaseWatch] = None) -> bool:
        """True when this process now holds the record's claim; a claim whose holder is provably gone (a dead
        pid on this host, a heartbeat elsewhere that `watch` saw stand still for the timeout) is taken over, a
        live holder's never. It never waits (the caller holds the sweep's lock).

        Args:
            watch: the caller's `LeaseWatch` of the claims (default: none, so a claim elsewhere is never taken).
        """
        try:
            self._claim = Lease.acquire(self.path.parent, what="trial", name=self.lock_path.name,
                                        durable=False,  # after a crash its holder is gone anyway
                                        announce=False,  # the worker says it took the trial over
                                        watch=watch, patient=False)
        except LeaseHeld:
            return False
        return True

    def release(self) -> None:
        if self._claim is not None:
            self._claim.release()
            self._claim = None

    def __enter__(self) -> "TrialRecord":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


# a record's JSON object: a `TrialEntry` as `dataclasses.asdict` writes it, `TrialEntry.from_json` reads it (the
# record's one typed definition; a dict only where the file is read or rewritten field by field)
RecordJSON = dict[str, Any]
TrialPair = tuple[TrialRecord, TrialEntry]  # a numbered trial's record and what it held (`TrialJournal.scan`)
DamagedRecord = tuple[TrialRecord, int, str]  # a numbered record whose content is damaged: (record, tid, why)


def _entry_of(data: RecordJSON) -> Optional[TrialEntry]:
    """The typed entry of a record's JSON object, or None (empty, or not a record's fields)."""
    return _entry_and_problem(data)[0]


def _entry_and_problem(data: RecordJSON) -> tuple[Optional[TrialEntry], Optional[str]]:
    """(the typed entry of a record's JSON object, or None; why its fields are not a trial record's, or None)."""
    if not data:
        return None, None
    try:
        return TrialEntry.from_json(data), None
    except (TypeError, ValueError) as error:
        return None, f"not a trial's record: {error}"


def numbered_name(tid: int) -> str:
    """`trial-0001.json` for trial id 0: sorted by name, sorted by number."""
    return f"trial-{tid + 1:04d}.json"


def hparams_key(hparams: dict[str, Any]) -> str:
    """A short, stable file name for a set of hparams."""
    text = json.dumps(hparams, sort_keys=True, default=str)
    return "trial-" + hashlib.sha1(text.encode()).hexdigest()[:12]
