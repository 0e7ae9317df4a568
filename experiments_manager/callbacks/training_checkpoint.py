"""Writes a resumable checkpoint at the end of every epoch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

import keras

if TYPE_CHECKING:
    from pathlib import Path

    from experiments_manager.run.checkpointing import Checkpointer


class Stateful(Protocol):
    """What a checkpoint saves the state of."""

    def get_state(self) -> object:
        ...


class TrainingCheckpoint(keras.callbacks.Callback):
    """Saves model, optimizer and callback state after each epoch.

    Place it after every callback whose state it saves, so the saved state
    includes this epoch.

    Args:
        checkpointer: an `experiments_manager.run.checkpointing.Checkpointer`.
        stateful: dict name -> object with `get_state()` (callbacks, `BestValue`,
            the Kafka stream's position).
        after_save: functions called once a checkpoint is on disk (e.g. commit
            Kafka offsets: only what a checkpoint holds may be committed).

    Example:

    ```python
    TrainingCheckpoint(Checkpointer(experiment.checkpoints_dir), {"early_stopping": stopper})
    ```
    """

    def __init__(self, checkpointer: Checkpointer, stateful: Mapping[str, Stateful],
                 after_save: Iterable[Callable[[], object]] = ()) -> None:
        super().__init__()
        self.checkpointer = checkpointer
        self.stateful = stateful
        self.after_save = list(after_save)
        self.epochs_completed: Optional[int] = None

    def save(self, epochs_completed: int) -> Path:
        state = {
            "epochs_completed": epochs_completed,
            "callbacks": {name: item.get_state() for name, item in self.stateful.items()},
        }
        folder = self.checkpointer.save(self.model, self.model.optimizer, state)
        for function in self.after_save:
            function()
        return folder

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self.epochs_completed = epoch + 1
        self.save(self.epochs_completed)
