"""Benchmark: weight histograms counted with numpy (`histogram_buckets`) against `tf.summary.histogram`.

Keras' `TensorBoard(histogram_freq=1)` writes each weight with `tf.summary.histogram`, whose bucketing builds a
one-hot float64 matrix of 30 values per weight value; the engine's `WeightHistograms` counts the same 30 buckets
with numpy. For float32 kernels of 1e4, 1e6 and 1e7 values (seeded normal values), side by side in this process:
the median wall and CPU time of each way (7 calls; 3 for TensorFlow's at 1e7), whether the buckets are equal, and
what one `WeightHistograms.on_epoch_end` costs for the bench's Dense MLP of that size (tools/bench_federated.py).

Usage (from the repository root):

    .venv/bin/python tools/bench_histograms.py [--sizes 1e4,1e6,1e7] [--seed 0]
"""

import argparse
import math
import statistics
import tempfile
import time


def timed(function, repeats):
    """(median wall seconds, median CPU seconds of this process) of `repeats` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def written_buckets(folder):
    """The buckets of the first histogram in `folder`'s event files, as numpy."""
    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2
    from tensorboard.util import tensor_util

    for path in sorted(tf.io.gfile.glob(f"{folder}/events.*")):
        for record in tf.data.TFRecordDataset(path):
            for value in event_pb2.Event.FromString(record.numpy()).summary.value:
                return tensor_util.make_ndarray(value.tensor)
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e4,1e6,1e7", help="kernel sizes (values), comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from experiments_manager.callbacks.weight_histograms import WeightHistograms, histogram_buckets

    print(f"seed {arguments.seed}; medians of 7 calls (3 for tf.summary.histogram at 1e7)")
    print(f"{'values':>8} {'numpy ms':>9} {'CPU ms':>7} {'tf.summary ms':>14} {'CPU ms':>7} {'ratio':>6} "
          f"{'equal':>6} {'on_epoch_end ms (MLP)':>22}")
    for size in (int(float(text)) for text in arguments.sizes.split(",")):
        side = int(math.sqrt(size))
        values = np.random.default_rng(arguments.seed).normal(size=(side, side)).astype(np.float32)
        ours, ours_cpu = timed(lambda: histogram_buckets(values), 7)
        with tempfile.TemporaryDirectory() as folder:
            tensor, writer, step = tf.constant(values), tf.summary.create_file_writer(folder), iter(range(1000))

            def tensorflow_histogram():  # what Keras' TensorBoard callback does per weight
                with writer.as_default():
                    tf.summary.histogram("w", tensor, step=next(step))

            theirs, theirs_cpu = timed(tensorflow_histogram, 3 if size >= 10 ** 7 else 7)
            writer.close()
            equal = np.array_equal(histogram_buckets(values), written_buckets(folder))
            inputs = keras.Input(shape=(16,))
            hidden = keras.layers.Dense(side, activation="relu")(inputs)
            hidden = keras.layers.Dense(side, activation="relu")(hidden)
            model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
            callback = WeightHistograms(folder)
            callback.set_model(model)
            callback.set_params({"epochs": 1000})
            callback.on_epoch_end(0)  # the writer's first use
            epoch = iter(range(1, 1000))
            epoch_end, _ = timed(lambda: callback.on_epoch_end(next(epoch)), 7)
            callback.writers.flush()
        print(f"{side * side:8.0e} {ours * 1e3:9.1f} {ours_cpu * 1e3:7.1f} {theirs * 1e3:14.1f} "
              f"{theirs_cpu * 1e3:7.1f} {theirs / ours:6.1f} {str(equal):>6} {epoch_end * 1e3:22.1f}")


if __name__ == "__main__":
    main()
