"""Adds the optimizer's learning rate to the epoch logs."""

from typing import Any, Optional

import keras


class LearningRateLogger(keras.callbacks.Callback):
    """Puts `learning_rate` into each epoch's logs, as Keras' `TensorBoard` callback does.

    Placed before the callbacks that write the logs, the rate the epoch trained
    at reaches TensorBoard (`epoch_learning_rate`, `train` run), history.csv and
    training_curves.png, whether it comes from a fixed value, a schedule or
    LR-on-plateau (which lowers it after this callback has read it).

    Example:

    ```python
    model.fit(..., callbacks=[LearningRateLogger(), HistoryCSV("history.csv")])
    ```
    """

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        if logs is None or self.model.optimizer is None:
            return
        rate = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))
