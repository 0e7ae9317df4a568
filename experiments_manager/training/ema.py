"""Polyak averaging (EMA) of the weights, with a decay that warms up.

Keras' `use_ema` averages with a fixed momentum from the first step, so the
averages lag far behind the weights early in training (with 0.99, 40 steps
still give the initial weights 67 % of the weight). TF Model Garden's EMA
optimizer warms the decay up instead, `min(momentum, (1 + n) / (10 + n))`; the
engine uses the same form with a longer warm-up:

    decay(n) = min(ema_momentum, (1 + n) / (40 + n))

where n counts the updates since the averages were (re)started. The averages
then cover about the last 1/39 of the updates (at most ~1 / (1 - ema_momentum)
of them), so they follow the weights while those move fast and smooth them
once they settle. With TF Model Garden's 10, the averages covered the last 1/9
of the run and the classification example's EMA weights validated up to 1.3x
worse than the raw ones; with 40, every example stays within 1.1x and beats
the raw weights over the second half of its run (tools/bench_ema.py,
BENCHMARKS.md).

`n` is the optimizer's own iteration counter minus the step the averages
(re)started at: a resumed run restores the counter and the averages from its
checkpoint and continues the same schedule; a federated client restarts the
averages from the global weights at every round (`restart`).
"""

from typing import Any, Optional

WARMUP_OFFSET = 40.0  # the 40 in (1 + n) / (40 + n)


def warmed_up_decay(updates: float, ceiling: float) -> float:
    """The decay used at an update, `updates` updates after the averages (re)started.

    Args:
        updates: updates already done since the start (0 for the first one).
        ceiling: the settings' `ema_momentum`.

    Returns:
        0.0 for the first update (the averages take the weights), then
        `min(ceiling, (1 + updates) / (40 + updates))`.

    Example:

    ```python
    warmed_up_decay(0, 0.99)    # 0.0
    warmed_up_decay(40, 0.99)   # 0.5125
    warmed_up_decay(5000, 0.99) # 0.99
    ```
    """
    if updates <= 0:
        return 0.0
    return min(ceiling, (1.0 + updates) / (WARMUP_OFFSET + updates))


class WeightAverages:
    """The EMA weights a run validates, exports and serves.

    `attach` rebuilds the settings' optimizer with `use_ema=True` and, with
    `warmup`, replaces its per-step average update by the warmed-up one.
    `restart` starts the averages again from the current weights (a federated
    client receiving the global weights).

    Args:
        ceiling: the highest decay (`ema_momentum`, default 0.99).
        warmup: warm the decay up (default True); False keeps Keras' fixed
            momentum from the first step.

    Example:

    ```python
    averages = WeightAverages(0.99)
    with strategy.scope():
        optimizer = averages.attach(keras.optimizers.Adam(1e-3))
        model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, callbacks=[keras.callbacks.SwapEMAWeights()])
    ```
    """

    def __init__(self, ceiling: float = 0.99, warmup: bool = True) -> None:
        self.ceiling = float(ceiling)
        self.warmup = warmup
        self.optimizer: Any = None  # the Keras optimizer `attach` rebuilt (None before)
        self._start: Any = None  # the tf.Variable of the step the averages (re)started at (None without warmup)

    def attach(self, optimizer: Any) -> Any:
        """The same optimizer rebuilt with EMA on; create it under the run's strategy scope.

        A `LossScaleOptimizer` the settings return (mixed precision) keeps its
        scale settings; the optimizer inside it keeps the averages.
        """
        import keras
        import tensorflow as tf

        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return type(optimizer)(self.attach(optimizer.inner_optimizer), initial_scale=optimizer.initial_scale,
                                   dynamic_growth_steps=optimizer.dynamic_growth_steps, name=optimizer.name)
        config = {**optimizer.get_config(), "use_ema": True, "ema_momentum": self.ceiling}
        self.optimizer = type(optimizer).from_config(config)
        if self.warmup:
            self._start = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_warmup_start")
            # the instance's own update: the class, its name and its config stay the user's
            self.optimizer._update_model_variables_moving_average = self._update_averages
        return self.optimizer

    def _update_averages(self, trainable_variables: list[Any]) -> None:
        """Replaces `BaseOptimizer._update_model_variables_moving_average` (called in `apply`, before
        the iteration counter is incremented)."""
        from keras import ops

        updates = ops.cast(ops.subtract(self.optimizer.iterations, self._start), "float32")
        warm = ops.minimum(self.ceiling, (1.0 + updates) / (WARMUP_OFFSET + updates))
        decay = ops.where(ops.greater(updates, 0.0), warm, 0.0)
        for variable, average in zip(trainable_variables, self.optimizer._model_variables_moving_average):
            if average is not None:
                rate = ops.cast(decay, variable.dtype)
                average.assign(ops.add(ops.multiply(rate, average), ops.multiply(ops.subtract(1, rate), variable)))

    def decay_now(self) -> Optional[float]:
        """The decay the next update will use (for logs and tests)."""
        if self.optimizer is None:
            return None
        iterations = int(self.optimizer.iterations.numpy())
        if not self.warmup:
            return 0.0 if iterations == 0 else self.ceiling
        return warmed_up_decay(iterations - int(self._start.numpy()), self.ceiling)

    def restart(self, model: Any) -> None:
        """Sets the averages to the model's current weights; the warm-up starts again from here."""
        averages = getattr(self.optimizer, "_model_variables_moving_average", None) or []
        for average, variable in zip(averages, model.trainable_variables):
            average.assign(variable)
        if self._start is not None:
            self._start.assign(int(self.optimizer.iterations.numpy()))

