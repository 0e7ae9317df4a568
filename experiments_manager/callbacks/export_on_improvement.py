"""Exports a new served-model version when the monitored value improves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Protocol

import keras

if TYPE_CHECKING:
    from experiments_manager.callbacks.best_value import BestValue


class VersionExporter(Protocol):
    """What the callback asks of an `experiments_manager.export.Exporter` (callbacks do not import `export`)."""

    def export(self, epochs_completed: int, value: Optional[float], best: bool) -> object:
        ...

    def wait(self) -> object:
        ...

    def finish(self) -> object:
        ...


class ExportOnImprovement(keras.callbacks.Callback):
    """Asks the exporter for a new version at the end of an epoch; waits for the last one at the end of training.

    With an exporter that writes in the background, each epoch end first waits for the previous epoch's version
    (long written by then) and raises its failure, so the checkpoint that follows can only miss this epoch's
    version (which `Exporter.export_missing` redoes after a resume). At the end of training the version being
    written is waited for and run.json lists it before the run reports.

    Args:
        exporter: an `experiments_manager.export.Exporter`.
        best: the `BestValue` updated earlier in the same epoch.
        every_epoch: export at every epoch, not only on improvement
            (the settings' `save_only_last_best_model = False`).

    Example:

    ```python
    callbacks = [TrackBestValue(best, "settings.py"), ExportOnImprovement(exporter, best)]
    ```
    """

    def __init__(self, exporter: VersionExporter, best: BestValue, every_epoch: bool = False) -> None:
        super().__init__()
        self.exporter = exporter
        self.best = best
        self.every_epoch = every_epoch

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        improved = self.best.improved_at(epoch)
        if self.every_epoch or improved:
            value = (logs or {}).get(self.best.monitor)
            self.exporter.export(epochs_completed=epoch + 1, value=value, best=improved)
        else:
            self.exporter.wait()

    def on_train_end(self, logs: Optional[dict[str, Any]] = None) -> None:
        self.exporter.finish()
