"""Keeps run.json current: epochs done, best value, exported versions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

import keras

from experiments_manager.utils.epochs import shown_epoch

if TYPE_CHECKING:
    from experiments_manager.callbacks.best_value import BestValue
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.record_writer import EpochProgress, VersionProgress


class ExportRecords(Protocol):
    """What the callback asks of an `experiments_manager.export.Exporter` (callbacks do not import `export`)."""

    def progress(self) -> VersionProgress:
        ...


class Durability(Protocol):
    """What the callback asks of a `TrainingCheckpoint`: to run a function once the epoch's checkpoint is durable."""

    def when_durable(self, function: Callable[[], object]) -> None:
        ...


class RunInfoUpdater(keras.callbacks.Callback):
    """Writes progress into the experiment's run.json after each epoch, once the epoch's checkpoint is durable:
    run.json never claims an epoch the checkpoints do not hold.

    Args:
        experiment: the `Experiment`.
        best: the `BestValue`.
        exporter: the `Exporter` (for the list of versions), or None when the run exports nothing.
        checkpoint: the `TrainingCheckpoint` whose write the record waits for (default None: written at once).
    """

    def __init__(self, experiment: Experiment, best: BestValue, exporter: Optional[ExportRecords],
                 checkpoint: Optional[Durability] = None) -> None:
        super().__init__()
        self.experiment = experiment
        self.best = best
        self.exporter = exporter
        self.checkpoint = checkpoint

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        progress: EpochProgress = {
            "epochs_completed": shown_epoch(epoch),  # n epochs done: the last one is epoch n
            "best_value": self.best.value,
            "best_epoch": None if self.best.epoch is None else shown_epoch(self.best.epoch),
            "last_epoch_logs": {key: float(value) for key, value in (logs or {}).items()},
        }
        versions = self.exporter.progress() if self.exporter is not None else None
        if self.checkpoint is None:
            self.experiment.record.epoch(progress, versions)
        else:  # in the thread writing the checkpoint, when it writes it there
            self.checkpoint.when_durable(lambda: self.experiment.record.epoch(progress, versions))
