"""Epoch-level TensorBoard scalars, laid out as Keras' TensorBoard callback does."""

import keras


class EpochScalars(keras.callbacks.Callback):
    """Writes every epoch log to `logs/train` and `logs/validation` (tags `epoch_<name>`).

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
        import tensorflow as tf

        self._writers = {
            "train": tf.summary.create_file_writer(f"{self.log_dir}/train"),
            "validation": tf.summary.create_file_writer(f"{self.log_dir}/validation"),
        }

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        for name, value in (logs or {}).items():
            run, tag = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            with self._writers[run].as_default():
                tf.summary.scalar(f"epoch_{tag}", float(value), step=epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in (self._writers or {}).values():
            writer.close()
