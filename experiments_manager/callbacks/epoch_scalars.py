"""Epoch-level TensorBoard scalars, laid out as Keras' TensorBoard callback does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import keras

from experiments_manager.callbacks.summary_writers import shared_writers
from experiments_manager.utils.epochs import shown_epoch
from experiments_manager.settings.monitor import is_raw, metric_name

if TYPE_CHECKING:
    from experiments_manager.callbacks.summary_writers import WritersOrFolder


class EpochScalars(keras.callbacks.Callback):
    """Writes every epoch log to `logs/train` and `logs/validation` (tags `epoch_<name>`, step = epoch from 1).

    The validation of the raw (non-EMA) weights, `val_<name>_raw`, goes to
    `logs/validation_raw` under the same tags, so TensorBoard draws it in the
    same chart as the EMA validation.

    Keras' own `TensorBoard` callback also hooks every training step (a step
    counter variable it updates), which stops Keras from dispatching callbacks
    asynchronously and cost about 1 ms per step here; this callback only
    acts at epoch end. Profiling is `StepProfiler`'s job.

    Args:
        writers: the experiment's `SummaryWriters` (or its logs folder).

    Example:

    ```python
    model.fit(..., callbacks=[EpochScalars("logs")])   # tensorboard --logdir logs
    ```
    """

    def __init__(self, writers: WritersOrFolder) -> None:
        super().__init__()
        self.writers = shared_writers(writers)

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        import tensorflow as tf

        for name, value in (logs or {}).items():
            run, tag = run_and_tag(name)
            with self.writers.writer(run).as_default():
                tf.summary.scalar(f"epoch_{tag}", float(value), step=shown_epoch(epoch))
        self.writers.flush()


def run_and_tag(name: str) -> tuple[str, str]:
    """The TensorBoard run and tag of an epoch log: 'val_loss_raw' -> ('validation_raw', 'loss')."""
    if is_raw(name):
        return "validation_raw", metric_name(name)
    return ("validation" if name.startswith("val_") else "train"), metric_name(name)
