"""How a sweep's next trial is picked, for a worker that asks (under the sweep's short lock, `store.SweepStore`).

In this order:

1. **Take over** a trial that is not done and whose claim is free (it was interrupted) or provably gone (its worker
   was killed, its node lost, its Slurm job requeued: `journal.TrialRecord.lock`); it continues from its
   experiment's checkpoint. A live worker's claim is never taken; a claim on another node whose heartbeat looks
   stale is counted (`NothingLeft.watching`), its trial's experiment watched alongside (one wait in all).
2. **Promote** a paused trial, with a scheduler (`Scheduler.claim_promotion`: ASHA, Hyperband): the best of those
   in the top 1/eta of their rung continues to its next rung.
3. **Suggest** a new point (`Sampler.suggest`: hyperopt's TPE by default), as the trial with the first free
   number, while the sweep has fewer trials than its total. A point a finished trial (or an older engine's record,
   `EarlierResults`) already has is not trained again: its record reuses that result (`same_as`).

Each part sits behind a small interface (below): the journal (`TrialStorage`), the suggestion (`Sampler`), the
scheduler (`Scheduler`), an older engine's records (`EarlierResults`).

Example:

```python
step = pick_next_trial(pairs, TrialSources(journal, sampler, schedule, earlier), worker, total=40, watch=watch)
if isinstance(step, Assignment):
    ...  # train it
```
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, Union, cast

from experiments_manager.run.names import now
from experiments_manager.sweeps.journal import TrialEntry
from experiments_manager.sweeps.steps import Assignment, NothingLeft
from experiments_manager.sweeps.trial_state import TrialState
from experiments_manager.utils.lease import LEASE_NAME
from experiments_manager.utils.lease_holder import LeaseWatch, lease_timeout, live_holder, read_holder

if TYPE_CHECKING:
    from experiments_manager.sweeps.journal import TrialPair, TrialRecord

_RESULT_FIELDS = ("status", "experiment", "log", "reason", "best_value", "best_epoch", "loss")


class TrialStorage(Protocol):
    """Where trial records are created (`journal.TrialJournal`)."""

    def create(self, entry: TrialEntry) -> Optional[TrialRecord]:
        """The new numbered record, written whole; None when one has its number."""


class Sampler(Protocol):
    """Where a new trial's point comes from (`sampler.HyperoptSampler`)."""

    def suggest(self, tid: int, pairs: list[TrialPair]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """(the hparams of trial `tid`, the algorithm's record of the point), from the journal's trials."""


class Scheduler(Protocol):
    """What stops bad trials early (`scheduler.RungSchedule`)."""

    def claim_promotion(self, pairs: list[TrialPair],
                        claim: Callable[[TrialRecord], bool]) -> Optional[tuple[TrialRecord, int]]:
        """(the paused trial promoted now, claimed, the epochs of its next rung), or None."""

    def new_trial_fields(self, tid: int) -> dict[str, Any]:
        """A new trial's record fields (its bracket, its first rung)."""

    def rung_result_fields(self, entry: TrialEntry) -> dict[str, Any]:
        """The record fields of a trial that trained to its rung: its value there, and paused below the last."""


class EarlierResults(Protocol):
    """What an older engine's records know of a point (`legacy.EarlierRecords`)."""

    def result(self, hparams: dict[str, Any]) -> Optional[TrialEntry]:
        """A finished or failed result of this point, or None."""

    def experiment(self, hparams: dict[str, Any]) -> Optional[str]:
        """An unfinished experiment of this point, to continue, or None."""


@dataclasses.dataclass
class TrialSources:
    """Where a worker's next trial can come from.

    Args:
        storage: the journal (records are created there).
        sampler: the suggestion of new points.
        scheduler: ASHA or Hyperband, or None (every trial trains `nbEpoch`).
        earlier: an older engine's records of points.
    """

    storage: TrialStorage
    sampler: Sampler
    scheduler: Optional[Scheduler]
    earlier: EarlierResults


def pick_next_trial(pairs: list[TrialPair], sources: TrialSources, worker: dict[str, Any], total: int,
                    watch: LeaseWatch) -> Union[Assignment, NothingLeft]:
    """The trial `worker` trains next, claimed: one to take over, a promotion, or a new point; `NothingLeft` when
    none is there. Call it under the sweep's short lock.

    Args:
        pairs: the journal's (record, entry) pairs, by trial id (new records are appended to it).
        sources: the `TrialSources`.
        worker: who asks (`store.worker_identity()`), recorded in the trial's record.
        total: the number of trials the sweep has in all.
        watch: the worker's `LeaseWatch` of the other workers' claims.
    """
    taken, watching = _taken_over(pairs, worker, watch, sources.scheduler)
    if taken is not None:
        return taken
    promoted = _promoted(pairs, sources.scheduler, worker, watch)
    if promoted is not None:
        return promoted
    suggested = _suggested(pairs, sources, worker, total)
    if suggested is not None:
        return suggested
    done = sum(entry.done for _, entry in pairs)
    return NothingLeft(done=done, running=len(pairs) - done, watching=watching)


def _taken_over(pairs: list[TrialPair], worker: dict[str, Any], watch: LeaseWatch,
                scheduler: Optional[Scheduler]) -> tuple[Optional[Assignment], int]:
    """(a trial not done whose claim is free or whose worker is provably gone, claimed; or None, how many claims
    elsewhere look stale). A trial that trained to its rung and whose worker died before telling its value there
    is settled instead (its value recorded, paused or finished): nothing of it is trained again."""
    watching = 0
    for index, (record, entry) in enumerate(pairs):
        if entry.done:
            continue
        holder = live_holder(record.lock_path, watch=watch)
        if holder is not None:  # a live worker's claim is not even tried (each try writes a file)
            if entry.experiment and not holder.is_local():  # its trial's writer, watched alongside
                live_holder(Path(entry.experiment) / LEASE_NAME, watch=watch)  # (one wait in all)
            watching += holder.looks_stale(lease_timeout())
            continue
        released = read_holder(record.lock_path) is None
        if record.lock(watch):
            if entry.rung_value_pending and scheduler is not None:  # what its worker's tell would have written
                pairs[index] = (record, TrialEntry.from_json(record.update(**scheduler.rung_result_fields(entry))))
                record.release()
                continue
            why = ("it was interrupted" if entry.status is TrialState.INTERRUPTED and released else
                   f"its worker, {describe_worker(entry.worker)}, is gone")
            same_host = (entry.worker or {}).get("host") == worker["host"]
            record.update(worker=worker, takeovers=entry.takeovers + 1,  # a pid means something on its host only
                          pid=entry.pid if same_host else None)
            return Assignment(record, cast(TrialEntry, record.entry()), taken_over=why), watching  # (just written)
    return None, watching


def _promoted(pairs: list[TrialPair], scheduler: Optional[Scheduler], worker: dict[str, Any],
              watch: LeaseWatch) -> Optional[Assignment]:
    """With a scheduler: the paused trial it promotes now, claimed and marked PROMOTED to its next rung (a worker
    that dies now leaves a claim the next ask takes over), or None."""
    found = scheduler.claim_promotion(pairs, lambda record: record.lock(watch)) if scheduler else None
    if found is None:
        return None
    record, epochs = found
    entry = record.entry()
    info = record.update(status=TrialState.PROMOTED, epochs_target=epochs,
                         promotions=entry.promotions + 1 if entry else 1, worker=worker, pid=None)
    return Assignment(record, TrialEntry.from_json(info), promoted_to=epochs)


def _suggested(pairs: list[TrialPair], sources: TrialSources, worker: dict[str, Any],
               total: int) -> Optional[Assignment]:
    """A new point as the trial with the first free number, claimed, while the sweep has fewer than `total` trials;
    a point already done gets a record of that result instead (and the next number is tried)."""
    unreadable: set[int] = set()  # numbers whose record exists but cannot be read now (a network file system)
    while len(pairs) < total:
        tid = _first_free(pairs, unreadable)
        hparams, vals = sources.sampler.suggest(tid, pairs)
        earlier = next((entry for _, entry in pairs if entry.final and entry.hparams == hparams), None)
        earlier = earlier or sources.earlier.result(hparams)
        if earlier is not None:  # a finished point suggested again: its result, not a retraining
            entry = TrialEntry(hparams=hparams, tid=tid, vals=vals, seconds=0.0, same_as=earlier.number,
                               ended=now(), **{name: getattr(earlier, name) for name in _RESULT_FIELDS})
        else:
            entry = TrialEntry(hparams=hparams, tid=tid, vals=vals, worker=worker,
                               experiment=sources.earlier.experiment(hparams),
                               **(sources.scheduler.new_trial_fields(tid) if sources.scheduler else {}))
        record = sources.storage.create(entry)
        if record is None:  # its number is taken by a record this listing missed
            unreadable.add(tid)
            continue
        pairs.append((record, entry))
        if earlier is None and record.lock():
            return Assignment(record, entry)
    return None


def describe_worker(worker: Optional[dict[str, Any]]) -> str:
    """'pid 123 on node7 (Slurm array task 55_3)': who a record's worker is."""
    if not worker:
        return "an unknown worker"
    text = f"pid {worker.get('pid')} on {worker.get('host')}"
    if worker.get("slurm_array_task") is not None:
        text += f" (Slurm array task {worker.get('slurm_array_job')}_{worker['slurm_array_task']})"
    elif worker.get("slurm_job"):
        text += f" (Slurm job {worker['slurm_job']})"
    return text


def _first_free(pairs: list[TrialPair], also_taken: set[int]) -> int:
    taken = {entry.tid for _, entry in pairs} | also_taken
    tid = 0
    while tid in taken:
        tid += 1
    return tid
