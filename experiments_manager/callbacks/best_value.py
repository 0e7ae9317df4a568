"""The best value of the monitored quantity so far."""

import math
from collections.abc import Mapping
from typing import Any, Optional, SupportsFloat

import keras

from experiments_manager.run.resume_state import BestState
from experiments_manager.utils.errors import UserInputError
from experiments_manager.settings.monitor import monitor_mode


class BestValue:
    """Tracks the best monitored value and the epoch it was reached.

    Args:
        monitor: the name of the logged quantity, e.g. "val_loss".

    `mode` ('min' or 'max') is guessed from the name until `ResolveMonitorMode`
    sets it from the model's metrics.

    Example:

    ```python
    best = BestValue("val_loss")
    best.update(0, 1.5)  # True: first value
    best.update(1, 2.0)  # False
    ```
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.mode = monitor_mode(monitor)
        self.value: Optional[float] = None
        self.epoch: Optional[int] = None

    def update(self, epoch: int, value: SupportsFloat) -> bool:
        """Records `value` for `epoch`; returns True when it is an improvement."""
        value = float(value)
        if math.isnan(value):
            return False
        better = self.value is None or (value > self.value if self.mode == "max" else value < self.value)
        if better:
            self.value, self.epoch = value, epoch
        return better

    def improved_at(self, epoch: int) -> bool:
        return self.epoch == epoch

    def get_state(self) -> BestState:
        return {"value": self.value, "epoch": self.epoch}

    def set_state(self, state: BestState) -> None:
        self.value = state.get("value")
        self.epoch = state.get("epoch")


class TrackBestValue(keras.callbacks.Callback):
    """Updates a `BestValue` from the epoch logs; later callbacks read it.

    Args:
        best: the `BestValue` to update.
        settings_name: the settings file name, for the error message.

    Raises:
        UserInputError: when the monitored name is not among the logged values.
    """

    def __init__(self, best: BestValue, settings_name: str) -> None:
        super().__init__()
        self.best = best
        self.settings_name = settings_name

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        logs = logs or {}
        if self.best.monitor not in logs:
            raise UserInputError(
                f"{self.settings_name}: monitored_loss_name: expected one of the logged values "
                f"{', '.join(sorted(logs))}, got {self.best.monitor!r}"
            )
        self.best.update(epoch, logs[self.best.monitor])
