"""Early stopping of bad trials: asynchronous successive halving (ASHA) and Hyperband over a sweep's journal.

A trial trains to its bracket's first **rung** (`min_epochs` epochs, `min_epochs * eta` for the next bracket of
Hyperband), records its monitored value there and is **paused**: checkpointed, its claim released. A worker that
asks for work first looks for a paused trial that ranks in the top `1/eta` of the trials that reached its rung
(by the value each had there; lower hyperopt loss is better: the recorded monitor's direction is already in it)
and **promotes** it: the trial continues from its own checkpoint to the next rung (`eta` times the epochs, capped
at `max_epochs`), on whichever worker promoted it. Only when nothing can be promoted does a new trial start
(Li et al., "A System for Massively Parallel Hyperparameter Tuning", 2020: the promotion rule of ASHA).

Hyperband runs several such ladders (**brackets**) side by side: bracket `b` starts at `min_epochs * eta**b`;
new trials go to the brackets in turn (trial id modulo the number of brackets), and a trial is compared only with
the trials of its own bracket (Ray Tune's asynchronous Hyperband does the same).

The decision reads the trial records only and is made under the sweep's short lock (`store.py`): any number of
workers on a shared file system agree, and a worker that dies after promoting leaves a `promoted` record whose
claim is gone, which the next worker takes over like any other.

Example:

```python
schedule = RungSchedule("asha", eta=3, min_epochs=1, max_epochs=9)
schedule.rungs(0)                      # [1, 3, 9]
schedule.first_epochs(tid=4)           # 1
schedule.promotion([entry, ...])       # (entry, 3): promote that paused trial to 3 epochs; or None
```
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, Optional

from experiments_manager.sweeps import SCHEDULERS
from experiments_manager.sweeps.journal import TrialEntry, TrialRecord
from experiments_manager.sweeps.trial_state import TrialState
from experiments_manager.utils.errors import UserInputError

DEFAULT_ETA = 3
DEFAULT_MIN_EPOCHS = 1
ScheduleJSON = dict[str, Any]  # sweep.json's `scheduler`: a `RungSchedule` as `to_json` writes it, `from_json` reads it


@dataclasses.dataclass(frozen=True)
class RungSchedule:
    """The rungs of a sweep with a scheduler: sweep.json's `scheduler`, its one typed definition.

    Args:
        kind: 'asha' or 'hyperband'.
        max_epochs: the last rung: a trial that reaches it is finished (the settings' `nbEpoch`, or `--max-epochs`).
        eta: the reduction factor: the top 1/eta of a rung is promoted, to eta times its epochs (default 3).
        min_epochs: the first rung of the first bracket (default 1).
    """

    kind: str
    max_epochs: int
    eta: int = DEFAULT_ETA
    min_epochs: int = DEFAULT_MIN_EPOCHS

    @classmethod
    def checked(cls, kind: str, max_epochs: int, eta: Optional[int] = None,
                min_epochs: Optional[int] = None) -> Optional["RungSchedule"]:
        """The schedule of these choices, or None for 'none'; one line per choice that cannot work."""
        if kind not in SCHEDULERS:
            raise UserInputError(f"--scheduler: expected one of {', '.join(SCHEDULERS)}, got {kind!r}")
        if kind == "none":
            return None
        eta = DEFAULT_ETA if eta is None else eta
        min_epochs = DEFAULT_MIN_EPOCHS if min_epochs is None else min_epochs
        problems = []
        if not isinstance(eta, int) or eta < 2:
            problems.append(f"--eta: expected an int >= 2, got {eta!r}")
        if not isinstance(min_epochs, int) or min_epochs < 1:
            problems.append(f"--min-epochs: expected an int >= 1, got {min_epochs!r}")
        elif not isinstance(max_epochs, int) or max_epochs <= min_epochs:
            problems.append(f"--min-epochs: expected fewer than the {max_epochs!r} epochs a trial trains in all "
                            f"(nbEpoch, or --max-epochs), got {min_epochs}")
        if problems:
            raise UserInputError(problems)
        return cls(kind, max_epochs, eta, min_epochs)

    @classmethod
    def from_json(cls, data: Optional[ScheduleJSON]) -> Optional["RungSchedule"]:
        """sweep.json's `scheduler` (None: a sweep without one)."""
        if not data:
            return None
        return cls(str(data["kind"]), int(data["max_epochs"]), int(data["eta"]), int(data["min_epochs"]))

    def to_json(self) -> ScheduleJSON:
        return dataclasses.asdict(self)

    def brackets(self) -> int:
        """1 for ASHA; for Hyperband, one per rung of the first bracket (the last bracket trains `max_epochs`
        straight away: Hyperband's hedge against a first rung that says nothing)."""
        return 1 if self.kind == "asha" else len(self.rungs(0))

    def bracket_of(self, tid: int) -> int:
        """The bracket of a new trial: the brackets in turn."""
        return tid % self.brackets()

    def rungs(self, bracket: int = 0) -> list[int]:
        """The epochs of each rung of `bracket`: min_epochs * eta**(bracket + k) below max_epochs, then max_epochs."""
        rungs = []
        epochs = self.min_epochs * self.eta ** bracket
        while epochs < self.max_epochs:
            rungs.append(epochs)
            epochs *= self.eta
        return rungs + [self.max_epochs]

    def first_epochs(self, tid: int) -> int:
        """The epochs a new trial trains before its first comparison."""
        return self.rungs(self.bracket_of(tid))[0]

    def promotion(self, entries: Iterable[TrialEntry]) -> Optional[tuple[TrialEntry, int]]:
        """A paused trial to promote now and the epochs of its next rung, or None: for each bracket, from its
        highest rung down, the best paused trial that ranks in the top `floor(n / eta)` of the `n` trials that
        reached that rung (ties: the earlier trial)."""
        entries = [entry for entry in entries if entry.tid is not None]
        for rung_index in reversed(range(len(self.rungs(0)) - 1)):  # (bracket 0 has the most rungs)
            for bracket in range(self.brackets()):
                rungs = self.rungs(bracket)
                if rung_index >= len(rungs) - 1:
                    continue
                epochs = rungs[rung_index]
                reached = sorted(((entry.rung_values[str(epochs)], entry.tid, entry) for entry in entries
                                  if entry.bracket == bracket and str(epochs) in entry.rung_values
                                  and _finite(entry.rung_values[str(epochs)])), key=lambda item: item[:2])
                for _, _, entry in reached[:len(reached) // self.eta]:
                    if entry.status == TrialState.PAUSED and entry.epochs_target == epochs:
                        return entry, rungs[rung_index + 1]
        return None

    def new_trial_fields(self, tid: int) -> dict[str, Any]:
        """A new trial's record fields: its bracket and first rung."""
        return {"bracket": self.bracket_of(tid), "epochs_target": self.first_epochs(tid)}

    def rung_result_fields(self, entry: TrialEntry) -> dict[str, Any]:
        """The record fields of a trial that trained to its rung (`TrialEntry.rung_value_pending`): its value there, and
        `paused` below the last rung (it stays `finished` at it, or when early stopping ended it sooner)."""
        if not entry.rung_value_pending or entry.epochs_target is None:
            return {}
        target = entry.epochs_target
        trained = entry.epochs_trained if entry.epochs_trained is not None else target
        fields: dict[str, object] = {"rung_values": {**entry.rung_values, str(target): entry.loss}}
        if trained >= target and target < self.max_epochs:
            fields["status"] = TrialState.PAUSED
        return fields

    def claim_promotion(self, pairs: list[tuple[TrialRecord, TrialEntry]],
                        claim: Callable[[TrialRecord], bool]) -> Optional[tuple[TrialRecord, int]]:
        """(the record of the paused trial to promote now, claimed with `claim(record)`, the epochs of its next
        rung), or None; a trial whose claim is still held is passed over for the next best.

        Args:
            pairs: the journal's (record, entry) pairs.
            claim: function(record) -> True when this worker now holds the trial's claim.
        """
        records = {entry.tid: record for record, entry in pairs}
        entries = [entry for _, entry in pairs]
        while True:
            promotion = self.promotion(entries)
            if promotion is None:
                return None
            entry, epochs = promotion
            if claim(records[entry.tid]):
                return records[entry.tid], epochs
            entries.remove(entry)


def reopens(entry: TrialEntry, old_max_epochs: int) -> bool:
    """Whether a trial finished at the last rung `old_max_epochs` (not sooner, by early stopping): after the last
    rung was raised, it is paused there and may be promoted."""
    return (entry.status == TrialState.FINISHED and entry.epochs_target == old_max_epochs
            and (entry.epochs_trained or 0) >= old_max_epochs)


def schedule_of(settings: object, kind: Optional[str], eta: Optional[int], min_epochs: Optional[int],
                max_epochs: Optional[int]) -> Optional[ScheduleJSON]:
    """sweep.json's `scheduler` of a new sweep (None: none): the command line's choices, else the settings'
    (`sweep_scheduler`, `sweep_eta`, `sweep_min_epochs`); the last rung is `nbEpoch` unless `max_epochs`."""
    sweep, training = getattr(settings, "sweep"), getattr(settings, "training")
    schedule = RungSchedule.checked(kind or sweep.scheduler or "none", max_epochs or training.epochs,
                                    eta if eta is not None else sweep.eta,
                                    min_epochs if min_epochs is not None else sweep.min_epochs)
    if schedule is None and any(value is not None for value in (eta, min_epochs, max_epochs)):
        raise UserInputError("--eta, --min-epochs, --max-epochs: only with --scheduler asha|hyperband")
    return None if schedule is None else schedule.to_json()


def raised_max_epochs(schedule: Optional[ScheduleJSON], max_epochs: Optional[int]) -> Optional[ScheduleJSON]:
    """sweep.json's `scheduler` with a resume's `--max-epochs` (only more than before)."""
    if max_epochs is None:
        return schedule
    if not schedule:
        raise UserInputError("--max-epochs: only for a sweep with a scheduler (this one trains every trial nbEpoch)")
    if max_epochs <= schedule["max_epochs"]:
        raise UserInputError(f"--max-epochs: expected more than the sweep's {schedule['max_epochs']}, got {max_epochs}")
    return {**schedule, "max_epochs": max_epochs}


def describe(schedule: Optional[ScheduleJSON]) -> str:
    """sweep.json's `scheduler` in words, e.g. 'asha (eta 3, 1 to 9 epochs)'."""
    if not schedule:
        return "none"
    return (f"{schedule['kind']} (eta {schedule['eta']}, {schedule['min_epochs']} to {schedule['max_epochs']} "
            "epochs)")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
