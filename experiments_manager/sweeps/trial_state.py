"""Every state a sweep's trial has, and the moves between them: the one trial-state enum (as Optuna's `TrialState`).

```
             new point ──> RUNNING ──> FINISHED (trained to its end: a result)
                            │  ^  ├──> FAILED (no result: its reason)
       a worker gone, or a  │  │  ├──> INTERRUPTED ──> RUNNING (taken over: continues from its checkpoint)
       stop: taken over ────┘  │  └──> PAUSED (a scheduler's rung reached) ──> PROMOTED ──> RUNNING (next rung)
                               │                      ^
                               └── PROMOTED           └── FINISHED at the old last rung, when a resume raises it
```

A trial's record (`journal.TrialEntry.status`) holds the state's value, the words a record has always held, so
the records of earlier engines read as they were written.

Example:

```python
TrialState("paused").done                          # True: it has a value to report (at its rung)
TrialState.PAUSED.may_become(TrialState.PROMOTED)  # True
```
"""

from __future__ import annotations

import enum
from typing import Optional


class TrialState(enum.StrEnum):
    """A trial's state; its value is the word its record holds."""

    RUNNING = "running"  # a worker trains it (its claim held), or trained it and is gone (then taken over)
    PAUSED = "paused"  # reached a scheduler's rung below the last: its value there recorded, waits for a promotion
    PROMOTED = "promoted"  # a worker chose it for its next rung and holds its claim; it continues from its checkpoint
    FINISHED = "finished"  # trained to its end (or early stopping ended it): its result recorded
    FAILED = "failed"  # ended without a result (raised, a NaN loss, killed): its reason recorded
    INTERRUPTED = "interrupted"  # stopped by a signal or the machine: taken over, it continues from its checkpoint

    @property
    def done(self) -> bool:
        """A result to report: finished, failed, or paused at a rung (its value there)."""
        return self in (TrialState.FINISHED, TrialState.FAILED, TrialState.PAUSED)

    @property
    def final(self) -> bool:
        """Never trained again (a paused trial may be promoted; a finished one only when a resume raises the last
        rung: `reopened`)."""
        return self in (TrialState.FINISHED, TrialState.FAILED)

    def may_become(self, state: TrialState) -> bool:
        """Whether a record in this state may be written in `state` (`MOVES`)."""
        return state in MOVES[self]


# the moves a record may make, from each state (staying in a state is always allowed: a record rewritten with more
# fields); a new record starts RUNNING (or, reusing a finished point's result, FINISHED / FAILED)
MOVES: dict[TrialState, frozenset[TrialState]] = {
    TrialState.RUNNING: frozenset(TrialState),  # a worker's tell, or a takeover of a gone worker's trial
    TrialState.PAUSED: frozenset({TrialState.PAUSED, TrialState.PROMOTED}),
    TrialState.PROMOTED: frozenset({TrialState.PROMOTED, TrialState.RUNNING, TrialState.INTERRUPTED,
                                    TrialState.FAILED}),
    TrialState.FINISHED: frozenset({TrialState.FINISHED, TrialState.PAUSED}),  # reopened: a raised last rung
    TrialState.FAILED: frozenset({TrialState.FAILED}),
    TrialState.INTERRUPTED: frozenset({TrialState.INTERRUPTED, TrialState.RUNNING, TrialState.FAILED}),
}


def state_of(word: object) -> Optional[TrialState]:
    """The state a record's `status` names, or None when it names none (a damaged or foreign record)."""
    try:
        return TrialState(word) if isinstance(word, str) else None
    except ValueError:
        return None
