"""What a sweep worker's ask gets from the shared store (`store.SweepStore.next_trial`): a trial to train, or
nothing left to start."""

from __future__ import annotations

import dataclasses
from typing import Optional

from experiments_manager.sweeps.journal import TrialEntry, TrialRecord


@dataclasses.dataclass
class Assignment:
    """A trial this worker now trains (its claim held until `SweepStore.record_result` or `give_back`).

    Args:
        record: the trial's record.
        entry: the record's content when it was assigned.
        taken_over: why it came to this worker from another one (None for a new trial).
        promoted_to: the epochs of the rung a scheduler promoted it to (None: not a promotion).
    """

    record: TrialRecord
    entry: TrialEntry
    taken_over: Optional[str] = None
    promoted_to: Optional[int] = None


@dataclasses.dataclass
class NothingLeft:
    """No trial to start or take over: `done` trials are finished (or failed), `running` run in other workers,
    `watching` of them by claims elsewhere that look stale here (ask again: `SweepStore.watch` decides)."""

    done: int
    running: int
    watching: int = 0
