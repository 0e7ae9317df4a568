"""Validation with the raw (trained, not averaged) weights, beside the EMA validation."""

from typing import Any, Optional

import keras

from experiments_manager.settings.monitor import raw_name
from experiments_manager.utils.epochs import on_schedule, shown_epoch


class RawWeightsValidation(keras.callbacks.Callback):
    """Adds `val_<name>_raw` to the epoch logs: the validation metrics of the raw weights.

    With Polyak averaging, `fit` validates the EMA weights (`SwapEMAWeights`
    swaps them in for validation only), and those are what the run exports and
    serves. This callback evaluates the weights being trained on the same
    validation data, so history.csv, TensorBoard and training_curves.png show
    what the averaging brings. Each pass costs as much as the EMA validation, so by default it runs every
    `frequency` epochs and at the last one only (settings: `raw_validation_freq`; `validate_raw_weights = False`
    turns it off); the other epochs log no `val_*_raw` value.

    Place it after `EMASwap` (or Keras' `SwapEMAWeights`) and before the callbacks that log or act on
    the epoch logs.

    Args:
        data: the validation dataset.
        steps: validation steps (None: the whole dataset).
        frequency: validate epochs 1, 1 + frequency, 1 + 2 * frequency, ... and the last of `fit`'s epochs
            (default 1: every epoch).

    Example:

    ```python
    model.fit(train, validation_data=val, epochs=40, callbacks=[
        keras.callbacks.SwapEMAWeights(), RawWeightsValidation(val, frequency=10), HistoryCSV("history.csv")])
    ```
    """

    def __init__(self, data: Any, steps: Optional[int] = None, frequency: int = 1) -> None:
        super().__init__()
        self.data = data
        self.steps = steps
        self.frequency = frequency

    def due(self, epoch: int) -> bool:
        """True when Keras' `epoch` (from 0) is one this callback validates."""
        return on_schedule(shown_epoch(epoch), self.frequency, (self.params or {}).get("epochs"))

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        if logs is None or "val_loss" not in logs or not self.due(epoch):  # no validation this epoch
            return
        results = self.model.evaluate(self.data, steps=self.steps, verbose=0, return_dict=True)
        for name, value in results.items():
            logs[raw_name(f"val_{name}")] = float(value)

