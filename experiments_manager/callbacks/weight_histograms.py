"""Weight distributions for TensorBoard's Histograms and Distributions tabs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import keras
import numpy as np

from experiments_manager.callbacks.summary_writers import shared_writers
from experiments_manager.utils.epochs import on_schedule, shown_epoch

if TYPE_CHECKING:
    import numpy.typing as npt

    from experiments_manager.callbacks.summary_writers import WritersOrFolder

_CHUNK = 1 << 16  # values counted at a time by `histogram_buckets` (512 KB of float64: stays in the CPU's cache)


class WeightHistograms(keras.callbacks.Callback):
    """Writes a histogram of every model weight every `every` epochs, and at the last epoch.

    The histograms go to the `train` run (`logs/train`), tagged by the weight's
    path (`dense/kernel`), at step = epoch counted from 1, as Keras'
    `TensorBoard(histogram_freq=...)` lays them out. The weights written are the
    ones being trained (with EMA, the averages are swapped in only for validation);
    a run stopped early between two written epochs gets its final weights (the
    EMA averages, with EMA) at its last epoch. The buckets are TensorBoard's own
    (`tf.summary.histogram`'s 30 equal-width buckets from the minimum to the
    maximum), counted with numpy from a copy of each weight, a cache-sized part
    at a time: no graph to trace, and no memory beyond the copy
    (`tf.summary.histogram` builds a one-hot matrix of 30 float64 per value:
    2.4 GB for 1e7 values). `histogram_freq = 0` in the settings turns it off.

    Args:
        writers: the experiment's `SummaryWriters` (or its logs folder).
        every: write epochs 1, 1 + every, 1 + 2 * every, ... (default 1: every epoch).

    Example:

    ```python
    model.fit(..., epochs=20, callbacks=[WeightHistograms("logs", every=5)])   # epochs 1, 6, 11, 16 and 20
    ```
    """

    def __init__(self, writers: WritersOrFolder, every: int = 1) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"every: expected an int >= 1, got {every!r}")
        self.writers = shared_writers(writers)
        self.every = every
        self._last: Optional[tuple[int, bool]] = None  # (epoch, written) of the last epoch trained

    def on_train_begin(self, logs: Optional[dict[str, Any]] = None) -> None:
        self._last = None

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        number = shown_epoch(epoch)
        written = on_schedule(number, self.every, (self.params or {}).get("epochs"))
        if written:
            self._write(number)
        self._last = (number, written)

    def on_train_end(self, logs: Optional[dict[str, Any]] = None) -> None:
        if self._last is not None and not self._last[1]:  # stopped early between two written epochs
            self._write(self._last[0])

    def _write(self, number: int) -> None:
        import tensorflow as tf
        from tensorboard.plugins.histogram import metadata

        writer = self.writers.writer("train")
        histogram = metadata.create_summary_metadata(display_name=None, description=None)  # the same for every tag
        with writer.as_default(), tf.device("/CPU:0"):
            for weight in self.model.weights:
                tf.summary.write(weight.path, histogram_buckets(np.asarray(weight.numpy())), step=number,
                                 metadata=histogram)
        writer.flush()


def histogram_buckets(values: npt.ArrayLike, bucket_count: int = 30) -> npt.NDArray[np.float64]:
    """TensorBoard's histogram of `values`, counted with numpy: what `tf.summary.histogram` writes.

    Args:
        values: an array of any shape (numbers).
        bucket_count: the number of buckets (default 30, TensorBoard's).

    Returns:
        a float64 array of shape [bucket_count, 3], a row (left edge, right edge, count) per bucket: equal widths
        from the minimum to the maximum, the maximum counted in the last bucket; all zeros for no values; for one
        distinct value, every edge at that value and every count in the last bucket. NaN and infinite values
        are left out (a diverged run's last weights still get a histogram of the others).

    Example:

    ```python
    histogram_buckets(np.array([0.0, 1.0, 1.0]), bucket_count=2)   # [[0, .5, 1], [.5, 1, 2]]
    ```
    """
    data = np.asarray(values).reshape(-1)
    buckets = np.zeros((bucket_count, 3))
    low, high = (data.min(), data.max()) if data.size else (0.0, 0.0)
    if not (np.isfinite(low) and np.isfinite(high)):  # the minimum or maximum is NaN or infinite if any value is
        data = data[np.isfinite(data)]
        low, high = (data.min(), data.max()) if data.size else (0.0, 0.0)
    if data.size == 0:
        return buckets
    low, high = np.float64(low), np.float64(high)  # the float64 values' own: converting keeps order (ints round)
    if low == high:
        buckets[:, :2] = high
        buckets[-1, 2] = data.size
        return buckets
    counts = np.zeros(bucket_count, np.int64)
    chunk = np.empty(min(_CHUNK, data.size))  # float64, as TensorBoard counts
    with np.errstate(all="ignore"):  # a range that overflows float64, or a denormal width: clipped, not raised
        width = (high - low) / bucket_count
        for start in range(0, data.size, _CHUNK):
            part = chunk[:min(_CHUNK, data.size - start)]
            part[:] = data[start:start + _CHUNK]
            np.subtract(part, low, out=part)
            np.divide(part, width, out=part)
            np.floor(part, out=part)
            np.nan_to_num(part, copy=False, nan=0.0, posinf=bucket_count - 1, neginf=0.0)
            np.clip(part, 0, bucket_count - 1, out=part)
            counts += np.bincount(part.astype(np.int64), minlength=bucket_count)
        edges = np.linspace(low, high, bucket_count + 1)
    edges[-1] = high
    buckets[:, 0], buckets[:, 1] = edges[:-1], edges[1:]
    buckets[:, 2] = counts
    return buckets
