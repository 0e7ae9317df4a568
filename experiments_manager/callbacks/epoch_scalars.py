"""Epoch-level TensorBoard scalars, laid out as Keras' TensorBoard callback does."""

import keras

from experiments_manager.monitor import is_raw, metric_name


class EpochScalars(keras.callbacks.Callback):
    """Writes every epoch log to `logs/train` and `logs/validation` (tags `epoch_<name>`).

    The validation of the raw (non-EMA) weights, `val_<name>_raw`, goes to
    `logs/validation_raw` under the same tags, so TensorBoard draws it in the
    same chart as the EMA validation.

    Keras' own `TensorBoard` callback also hooks every training step (a step
    counter variable it updates), which stops Keras from dispatching callbacks
    asynchronously and cost about 1 ms per step here; this callback only
    acts at epoch end. Profiling is `StepProfiler`'s job.

    Args:
        log_dir: the experiment's logs folder.

    Example:

    ```python
    model.fit(..., callbacks=[EpochScalars("logs")])   # tensorboard --logdir logs
    ```
    """

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = str(log_dir)
        self._writers = None

    def on_train_begin(self, logs=None):
        self._writers = {}

    def _writer(self, run):
        import tensorflow as tf

        if run not in self._writers:
            self._writers[run] = tf.summary.create_file_writer(f"{self.log_dir}/{run}")
        return self._writers[run]

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        for name, value in (logs or {}).items():
            run, tag = run_and_tag(name)
            with self._writer(run).as_default():
                tf.summary.scalar(f"epoch_{tag}", float(value), step=epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in (self._writers or {}).values():
            writer.close()


def run_and_tag(name):
    """The TensorBoard run and tag of an epoch log: 'val_loss_raw' -> ('validation_raw', 'loss')."""
    if is_raw(name):
        return "validation_raw", metric_name(name)
    return ("validation" if name.startswith("val_") else "train"), metric_name(name)
