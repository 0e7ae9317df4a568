"""FedProx's proximal term, applied as a decoupled step toward the round's global weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

import keras

if TYPE_CHECKING:
    from numpy.typing import NDArray


class ProximalStep(keras.callbacks.Callback):
    """After each batch, pulls the weights toward the global model: `w -= lr * mu * (w - w_global)`.

    That is a gradient step on FedProx's term `mu/2 * ||w - w_global||^2`, taken
    apart from the loss (as AdamW decouples weight decay), so any settings' loss
    and optimizer work unchanged.

    Args:
        global_weights: the trainable weights the round started from (numpy arrays).
        mu: FedProx's `proximal_mu`.

    Example:

    ```python
    model.fit(data, callbacks=[ProximalStep([w.numpy() for w in model.trainable_variables], mu=0.1)])
    ```
    """

    def __init__(self, global_weights: Sequence[NDArray[Any]], mu: float) -> None:
        super().__init__()
        self.global_weights = global_weights
        self.mu = mu
        self._rate = 0.0

    def on_epoch_begin(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        rate = self.model.optimizer.learning_rate
        self._rate = float(keras.ops.convert_to_numpy(rate)) * self.mu

    def on_train_batch_end(self, batch: int, logs: Optional[dict[str, Any]] = None) -> None:
        for variable, anchor in zip(self.model.trainable_variables, self.global_weights):
            variable.assign(variable - self._rate * (variable - anchor))
