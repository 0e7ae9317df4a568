"""Validation with the raw (trained, not averaged) weights, beside the EMA validation."""

from typing import Any, Optional

import keras

from experiments_manager.settings.monitor import raw_name


class RawWeightsValidation(keras.callbacks.Callback):
    """Adds `val_<name>_raw` to the epoch logs: the validation metrics of the raw weights.

    With Polyak averaging, `fit` validates the EMA weights (`SwapEMAWeights`
    swaps them in for validation only), and those are what the run exports and
    serves. This callback evaluates the weights being trained on the same
    validation data, so history.csv, TensorBoard and training_curves.png show
    what the averaging brings. It costs one more validation pass per epoch
    (settings: `validate_raw_weights = False` turns it off).

    Place it after `SwapEMAWeights` and before the callbacks that log or act on
    the epoch logs.

    Args:
        data: the validation dataset.
        steps: validation steps (None: the whole dataset).

    Example:

    ```python
    model.fit(train, validation_data=val, callbacks=[
        keras.callbacks.SwapEMAWeights(), RawWeightsValidation(val), HistoryCSV("history.csv")])
    ```
    """

    def __init__(self, data: Any, steps: Optional[int] = None) -> None:
        super().__init__()
        self.data = data
        self.steps = steps

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        if logs is None or "val_loss" not in logs:  # no validation this epoch
            return
        results = self.model.evaluate(self.data, steps=self.steps, verbose=0, return_dict=True)
        for name, value in results.items():
            logs[raw_name(f"val_{name}")] = float(value)

