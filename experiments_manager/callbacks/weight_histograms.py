"""Weight distributions for TensorBoard's Histograms and Distributions tabs."""

import keras

from experiments_manager.callbacks.summary_writers import shared_writers
from experiments_manager.utils.epochs import shown_epoch


class WeightHistograms(keras.callbacks.Callback):
    """Writes a histogram of every model weight every `every` epochs, and at the last epoch.

    The histograms go to the `train` run (`logs/train`), tagged by the weight's
    path (`dense/kernel`), at step = epoch counted from 1, as Keras'
    `TensorBoard(histogram_freq=...)` lays them out. The weights written are the
    ones being trained (with EMA, the averages are swapped in only for validation);
    a run stopped early between two written epochs gets its final weights (the
    EMA averages, with EMA) at its last epoch. The cost is one traced pass over
    the weights per written epoch (about 1 ms for the regression example, 12 ms
    for 60 weights); `histogram_freq = 0` in the settings turns it off.

    Args:
        writers: the experiment's `SummaryWriters` (or its logs folder).
        every: write epochs 1, 1 + every, 1 + 2 * every, ... (default 1: every epoch).

    Example:

    ```python
    model.fit(..., epochs=20, callbacks=[WeightHistograms("logs", every=5)])   # epochs 1, 6, 11, 16 and 20
    ```
    """

    def __init__(self, writers, every=1):
        super().__init__()
        if every < 1:
            raise ValueError(f"every: expected an int >= 1, got {every!r}")
        self.writers = shared_writers(writers)
        self.every = every
        self._last = None  # (epoch, written) of the last epoch trained
        self._function = self._function_model = None

    def on_train_begin(self, logs=None):
        self._last = None

    def on_epoch_end(self, epoch, logs=None):
        number = shown_epoch(epoch)
        written = (number - 1) % self.every == 0 or number == (self.params or {}).get("epochs")
        if written:
            self._write(number)
        self._last = (number, written)

    def on_train_end(self, logs=None):
        if self._last is not None and not self._last[1]:  # stopped early between two written epochs
            self._write(self._last[0])

    def _write(self, number):
        import tensorflow as tf

        if self._function is None or self._function_model is not self.model:
            self._function, self._function_model = self._traced(), self.model
        self._function(tf.constant(number, tf.int64))
        self.writers.writer("train").flush()

    def _traced(self):
        """One graph writing every histogram: eagerly, each weight cost ~6 ms here; traced, 60 weights ~12 ms."""
        import tensorflow as tf

        weights, writer = list(self.model.weights), self.writers.writer("train")

        def write(step):
            with writer.as_default():
                for weight in weights:
                    tf.summary.histogram(weight.path, weight.value, step=step)

        return tf.function(write, autograph=False)
