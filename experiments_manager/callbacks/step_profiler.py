"""Profiles a few training steps in the middle of the first epoch, for TensorBoard's profile tab."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import keras

if TYPE_CHECKING:
    from experiments_manager.utils.atomic import PathLike


class StepProfiler(keras.callbacks.Callback):
    """Runs the TensorFlow profiler from step `start` to step `stop` (0-based, first epoch run).

    Added only when the settings' `use_profiling` is True: it hooks every step.

    Args:
        log_dir: the experiment's logs folder (traces go to `<log_dir>/plugins/profile`).
        start: first profiled step.
        stop: step after the last profiled one.
    """

    def __init__(self, log_dir: PathLike, start: int, stop: int) -> None:
        super().__init__()
        self.log_dir = str(log_dir)
        self.start, self.stop = start, stop
        self._step = 0
        self._running = False

    def on_train_batch_begin(self, batch: int, logs: Optional[dict[str, Any]] = None) -> None:
        import tensorflow as tf

        if self._step == self.start and not self._running:
            tf.profiler.experimental.start(self.log_dir)
            self._running = True

    def on_train_batch_end(self, batch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self._step += 1
        if self._running and self._step >= self.stop:
            self._finish()

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        if self._running:  # an epoch shorter than the profiled window
            self._finish()

    def _finish(self) -> None:
        import tensorflow as tf

        tf.profiler.experimental.stop()
        self._running = False
