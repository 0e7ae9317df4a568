"""Keeps run.json current: epochs done, best value, exported versions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional, Protocol

import keras

from experiments_manager.utils.epochs import shown_epoch

if TYPE_CHECKING:
    from experiments_manager.callbacks.best_value import BestValue
    from experiments_manager.run.experiment import Experiment


class ExportRecords(Protocol):
    """What the callback asks of an `experiments_manager.export.Exporter` (callbacks do not import `export`)."""

    def run_info(self) -> Mapping[str, Any]:
        ...


class RunInfoUpdater(keras.callbacks.Callback):
    """Writes progress into the experiment's run.json after each epoch.

    Args:
        experiment: the `Experiment`.
        best: the `BestValue`.
        exporter: the `Exporter` (for the list of versions), or None when the run exports nothing.
    """

    def __init__(self, experiment: Experiment, best: BestValue, exporter: Optional[ExportRecords]) -> None:
        super().__init__()
        self.experiment = experiment
        self.best = best
        self.exporter = exporter

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        progress: dict[str, Any] = {
            "epochs_completed": shown_epoch(epoch),  # n epochs done: the last one is epoch n
            "best_value": self.best.value,
            "best_epoch": None if self.best.epoch is None else shown_epoch(self.best.epoch),
            "last_epoch_logs": {key: float(value) for key, value in (logs or {}).items()},
        }
        if self.exporter is not None:
            progress.update(self.exporter.run_info())
        self.experiment.update_run_info(**progress)
