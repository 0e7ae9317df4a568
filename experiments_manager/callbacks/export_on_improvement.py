"""Exports a new served-model version when the monitored value improves."""

import keras


class ExportOnImprovement(keras.callbacks.Callback):
    """Asks the exporter for a new version at the end of an epoch.

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

    def __init__(self, exporter, best, every_epoch=False):
        super().__init__()
        self.exporter = exporter
        self.best = best
        self.every_epoch = every_epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.every_epoch or self.best.improved_at(epoch):
            self.exporter.export()
