"""Profiles a few training steps in the middle of the first epoch, for TensorBoard's profile tab."""

import keras


class StepProfiler(keras.callbacks.Callback):
    """Runs the TensorFlow profiler from step `start` to step `stop` (0-based, first epoch run).

    Added only when the settings' `use_profiling` is True: it hooks every step.

    Args:
        log_dir: the experiment's logs folder (traces go to `<log_dir>/plugins/profile`).
        start: first profiled step.
        stop: step after the last profiled one.
    """

    def __init__(self, log_dir, start, stop):
        super().__init__()
        self.log_dir = str(log_dir)
        self.start, self.stop = start, stop
        self._step = 0
        self._running = False

    def on_train_batch_begin(self, batch, logs=None):
        import tensorflow as tf

        if self._step == self.start and not self._running:
            tf.profiler.experimental.start(self.log_dir)
            self._running = True

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._running and self._step >= self.stop:
            self._finish()

    def on_epoch_end(self, epoch, logs=None):
        if self._running:  # an epoch shorter than the profiled window
            self._finish()

    def _finish(self):
        import tensorflow as tf

        tf.profiler.experimental.stop()
        self._running = False
