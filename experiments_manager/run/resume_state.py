"""What a checkpoint's state.json holds for a resume: its one typed definition, and the parts that save it.

A checkpoint (`checkpointing.py`) keeps, beside the weights and the optimizer, the state of what counts across
epochs: the best monitored value, early stopping's and LR-on-plateau's counters, the version the exporter last asked
for, history.csv's rows, a Kafka stream's positions. `CheckpointState` is that file's type (`state_version` 2;
`migrations.py` reads version 1); `ResumableParts` names the object that holds each part (`get_state` /
`set_state`), so a checkpoint is written and a resume restored by role, not through a string-keyed dict. The JSON
is what checkpoints have held since the first engine: the same keys, in the same order. No TensorFlow.

Example:

```python
parts = ResumableParts(best, early_stopping, history, exports=exporter, reduce_lr=plateau)
state: CheckpointState = {"state_version": 2, "epochs_completed": 3, "callbacks": parts.states()}
parts.restore_counters(saved["callbacks"])     # a resume: best value, patience counters, the export asked for
```
"""

from __future__ import annotations

import dataclasses
from typing import Any, Generic, Optional, Protocol, TypedDict, TypeVar

CHECKPOINT_STATE_VERSION = 2
State = TypeVar("State")


class BestState(TypedDict, total=False):
    """`callbacks.BestValue`: the best monitored value and its epoch (counted from 0)."""

    value: Optional[float]
    epoch: Optional[int]


class PatienceState(TypedDict, total=False):
    """`callbacks.ResumableEarlyStopping` (wait, best, best_epoch) and `ResumableReduceLROnPlateau` (wait, best,
    cooldown_counter): Keras' own counters."""

    wait: int
    best: Optional[float]
    best_epoch: Optional[int]
    cooldown_counter: int


class RequestedVersion(TypedDict, total=False):
    """The version an epoch asked the exporter for (`export.Exporter.export_missing` writes it again after a kill)."""

    version: int
    epochs_completed: Optional[int]  # None: an export outside training (`Exporter.export` without it)
    value: Optional[float]
    best: bool


class ExportState(TypedDict, total=False):
    """`export.Exporter`: the version last asked for, and the run's best version."""

    requested: Optional[RequestedVersion]
    best_version: Optional[int]


class HistoryState(TypedDict, total=False):
    """`callbacks.HistoryCSV`: history.csv's header and rows, from which a damaged or lost file is written again."""

    header: list[str]
    rows: list[dict[str, str]]


class CallbackStates(TypedDict, total=False):
    """Each part's state, by role (a part a run does not have is left out)."""

    best: BestState
    early_stopping: PatienceState
    exports: ExportState
    reduce_lr: PatienceState
    history: HistoryState
    kafka: dict[str, Any]  # `kafka.stream.TrainingStream`'s positions (its own format: `StreamPosition`)


class CheckpointState(TypedDict, total=False):
    """A checkpoint's state.json."""

    state_version: int
    epochs_completed: int
    callbacks: CallbackStates
    files: dict[str, Any]  # each file's size and SHA-256 (`checkpointing.verify`)


class Stateful(Protocol, Generic[State]):
    """A part whose state a checkpoint saves."""

    def get_state(self) -> State: ...

    def set_state(self, state: State) -> None: ...


@dataclasses.dataclass
class ResumableParts:
    """The objects whose state a checkpoint saves, by role.

    Args:
        best: the run's `BestValue`.
        early_stopping: its `ResumableEarlyStopping`, or None (default None: a federation's server, which its
            rounds end).
        history: its `HistoryCSV`, once the plan has made it (default None).
        exports: its `Exporter`, or None for a run that exports nothing (a federated client) (default None).
        reduce_lr: its `ResumableReduceLROnPlateau`, or None when a schedule owns the learning rate (default None).
        kafka: a Kafka input's stream, or None (default None; the stream restores itself as it starts).
    """

    best: Stateful[BestState]
    early_stopping: Optional[Stateful[PatienceState]] = None
    history: Optional[Stateful[HistoryState]] = None
    exports: Optional[Stateful[ExportState]] = None
    reduce_lr: Optional[Stateful[PatienceState]] = None
    kafka: Optional[Stateful[dict[str, Any]]] = None

    def states(self) -> CallbackStates:
        """Every part's state now, in the order checkpoints have always held them."""
        states: CallbackStates = {"best": self.best.get_state()}
        if self.early_stopping is not None:
            states["early_stopping"] = self.early_stopping.get_state()
        if self.exports is not None:
            states["exports"] = self.exports.get_state()
        if self.reduce_lr is not None:
            states["reduce_lr"] = self.reduce_lr.get_state()
        if self.history is not None:
            states["history"] = self.history.get_state()
        if self.kafka is not None:
            states["kafka"] = self.kafka.get_state()
        return states

    def restore_counters(self, saved: CallbackStates) -> None:
        """Gives the best value, the patience counters and the exporter their saved state (history.csv is written
        again from its own, `HistoryCSV.set_state`, once the plan has read it)."""
        if "best" in saved:
            self.best.set_state(saved["best"])
        if self.early_stopping is not None and "early_stopping" in saved:
            self.early_stopping.set_state(saved["early_stopping"])
        if self.exports is not None and "exports" in saved:
            self.exports.set_state(saved["exports"])
        if self.reduce_lr is not None and "reduce_lr" in saved:
            self.reduce_lr.set_state(saved["reduce_lr"])

    def counters(self) -> list[Stateful[PatienceState]]:
        """The Keras callbacks whose counters carry on across a kept federated client's rounds."""
        return [counter for counter in (self.early_stopping, self.reduce_lr) if counter is not None]
