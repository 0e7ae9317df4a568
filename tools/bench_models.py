"""Benchmark: reading and writing versions of real architectures, the engine beside plain Keras, in one run.

Architectures (weights=None, small inputs, generated data): `mobilenetv3small`, `resnet50`, `efficientnetb0`
(32x32x3 images, 10 classes, a pooled Dense head on the `keras.applications` backbone) and `transformer` (a text
classifier on token ids: an embedding, two encoder blocks of multi-head attention, 2 classes).

Operations, each in its own process (TensorFlow state never carries over), the engine's and plain Keras' alternated
round by round:

- `train`: one epoch of 6 steps of 16 samples, then what a run leaves. Engine: `em.train` (its dry build, the
  first version's full SavedModel, checkpoint, TensorBoard, PNG). Plain: build, `fit`, `model.export` (a
  SavedModel), `model.save` (a .keras file).
- `load`: the trained model back, ready to predict. Engine: `em.load(run)` (the model rebuilt from the run's copies
  and the version's weights). Plain: `keras.models.load_model` of the .keras file.
- `evaluate`: its test set (48 samples). Engine: `em.evaluate(run)` (load, evaluate, a second pass for the
  classification report, its folder written). Plain: `load_model`, then `evaluate`.

Each row: the operation's own seconds (timed in the worker around the call: what the user waits for beyond
starting Python and TensorFlow), the whole process' wall and CPU seconds, medians over rounds; ratios engine /
plain. The engine's `train` row also gives the longest the training thread waited for the interpreter while
training (`sys.getswitchinterval` sampling in a watcher thread: a background step holding the GIL shows there).

Usage (from the repository root):

    .venv/bin/python tools/bench_models.py [--rounds 4] [--architectures mobilenetv3small,resnet50,...]
                                           [--operations train,load,evaluate]
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURES = ("mobilenetv3small", "resnet50", "efficientnetb0", "transformer")
OPERATIONS = ("train", "load", "evaluate")
KINDS = ("engine", "plain")
SAMPLES, TEST_SAMPLES, BATCH = 96, 48, 16

MODEL_FILE = '''import keras

VOCABULARY, LENGTH = 2000, 64


def build(arch):
    if arch == "smallcnn":
        images = keras.Input((32, 32, 3), name="image")
        hidden = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(images)
        hidden = keras.layers.MaxPool2D()(hidden)
        hidden = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(hidden)
        pooled = keras.layers.GlobalAveragePooling2D()(hidden)
        return keras.Model(images, keras.layers.Dense(10, activation="softmax")(pooled))
    if arch == "transformer":
        tokens = keras.Input((LENGTH,), dtype="int32", name="tokens")
        hidden = keras.layers.Embedding(VOCABULARY, 64)(tokens)
        for _ in range(2):
            attended = keras.layers.MultiHeadAttention(4, 16)(hidden, hidden)
            hidden = keras.layers.LayerNormalization()(hidden + attended)
            fed = keras.layers.Dense(64)(keras.layers.Dense(128, activation="relu")(hidden))
            hidden = keras.layers.LayerNormalization()(hidden + fed)
        pooled = keras.layers.GlobalAveragePooling1D()(hidden)
        return keras.Model(tokens, keras.layers.Dense(2, activation="softmax")(pooled))
    backbone = {"mobilenetv3small": keras.applications.MobileNetV3Small,
                "resnet50": keras.applications.ResNet50,
                "efficientnetb0": keras.applications.EfficientNetB0}[arch](
        weights=None, include_top=False, input_shape=(32, 32, 3))
    images = keras.Input((32, 32, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(backbone(images))
    return keras.Model(images, keras.layers.Dense(10, activation="softmax")(pooled))


def model(usersettings):
    return build(usersettings.hparams["arch"])
'''

SETTINGS_FILE = '''import numpy as np
import tensorflow as tf

workingFolder = "experiments"
session_name = "bench"
hparams = {"arch": ARCH, "nbEpoch": EPOCHS}
model_file = "model_bench.py"
nbEpoch = EPOCHS
random_seed = 1
raw_data_dir_train = "train"
raw_data_dir_val = "val"
raw_data_dir_test = "test"
batch_size = BATCH


def data(count, seed):
    rng = np.random.default_rng(seed)
    if hparams["arch"] == "transformer":
        x = rng.integers(0, 2000, size=(count, 64)).astype("int32")
        return x, (x[:, 0] % 2).astype("int64")
    return rng.uniform(0, 1, size=(count, 32, 32, 3)).astype("float32"), rng.integers(0, 10, count).astype("int64")


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    count = {"train": SAMPLES, "val": TEST, "test": TEST}[str(raw_data_files_folder).rstrip("/").split("/")[-1]]
    return tf.data.Dataset.from_tensor_slices(data(count, 0 if isTraining else 1)).batch(batch_size)


def get_learningRate():
    return 1e-3


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate)


def get_total_loss(model):
    return "sparse_categorical_crossentropy"


def get_metrics(model, loss):
    return ["accuracy"]
'''


def write_settings(folder: Path, arch: str, epochs: int = 1, samples: int = SAMPLES, test_samples: int = TEST_SAMPLES,
                   batch: int = BATCH) -> Path:
    """The settings and model files of `arch` in `folder` (and its data folders' names): `epochs` epochs of
    `samples` random samples in batches of `batch`, `test_samples` to validate and test (`tools/bench_fixed_cost.py`
    writes its runs with this too)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_bench.py").write_text(MODEL_FILE)
    for name in ("train", "val", "test"):
        (folder / name).mkdir(exist_ok=True)
    settings = (SETTINGS_FILE.replace("ARCH", repr(arch)).replace("BATCH", str(batch)).replace("EPOCHS", str(epochs))
                .replace("SAMPLES", str(samples)).replace("TEST", str(test_samples)))
    (folder / "settings_bench.py").write_text(settings)
    return folder / "settings_bench.py"


class LongestWait:
    """The longest the main thread waited for the interpreter: a watcher thread asks for it every 5 ms and records
    how late the answer came (a C call holding the GIL, a background export's Python walk)."""

    def __init__(self) -> None:
        import threading

        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            asked = time.perf_counter()
            time.sleep(0.005)
            self.longest = max(self.longest, time.perf_counter() - asked - 0.005)

    def __enter__(self) -> "LongestWait":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def worker(kind: str, operation: str, arch: str, folder: Path) -> dict:
    """One operation in this process; returns its seconds (and the longest interpreter wait for `train`)."""
    import numpy as np

    os.chdir(folder)  # the settings' relative folders; this process only
    sys.path.insert(0, str(folder))
    import keras

    result: dict = {}
    start = time.perf_counter()
    if kind == "engine":
        import experiments_manager as em

        if operation == "train":
            with LongestWait() as wait:
                outcome = em.train(str(folder / "settings_bench.py"))
            (folder / "run.txt").write_text(str(outcome.experiment.root))
            result["longest_wait"] = wait.longest
        else:
            run = (folder / "run.txt").read_text()
            if operation == "load":
                em.load(run)
            else:
                em.evaluate(run)
    else:
        import model_bench
        import settings_bench

        if operation == "train":
            model = model_bench.build(arch)
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"])
            with LongestWait() as wait:
                model.fit(settings_bench.get_input_pipeline("train", True, BATCH, 1),
                          validation_data=settings_bench.get_input_pipeline("val", False, BATCH, 1), verbose=0)
            model.export(str(folder / "plain_export"), verbose=False)
            model.save(str(folder / "plain.keras"))
            result["longest_wait"] = wait.longest
        else:
            model = keras.models.load_model(str(folder / "plain.keras"))
            if operation == "evaluate":
                model.evaluate(settings_bench.get_input_pipeline("test", False, BATCH, 1), verbose=0)
            else:
                np.asarray(model.predict(settings_bench.data(2, 1)[0], verbose=0))  # ready to predict
    result["seconds"] = time.perf_counter() - start
    return result


def measured(kind: str, operation: str, arch: str, folder: Path) -> dict:
    """Runs one operation in a new process; adds its wall and CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, __file__, "--worker", kind, operation, arch, str(folder)],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{kind} {operation} {arch} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(wall=wall, cpu=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--architectures", default=",".join(ARCHITECTURES))
    parser.add_argument("--operations", default=",".join(OPERATIONS))
    parser.add_argument("--worker", nargs=4, metavar=("KIND", "OPERATION", "ARCH", "FOLDER"))
    arguments = parser.parse_args()
    if arguments.worker:
        kind, operation, arch, folder = arguments.worker
        print(json.dumps(worker(kind, operation, arch, Path(folder))))
        return
    architectures = arguments.architectures.split(",")
    operations = [name for name in OPERATIONS if name in arguments.operations.split(",")]
    results: dict = {}
    base = Path(tempfile.mkdtemp(prefix="bench-models-"))
    try:
        for round_number in range(arguments.rounds):
            kinds = KINDS if round_number % 2 == 0 else KINDS[::-1]
            for arch in architectures:
                for kind in kinds:
                    folder = base / f"{arch}-{kind}-{round_number}"
                    write_settings(folder, arch)
                    for operation in ("train", *[name for name in operations if name != "train"]):
                        result = measured(kind, operation, arch, folder)
                        results.setdefault((arch, operation, kind), []).append(result)
                        print(f"round {round_number + 1} {arch:17} {operation:9} {kind:7} op {result['seconds']:7.1f} s"
                              f"  process {result['wall']:6.1f} s wall {result['cpu']:6.1f} s CPU"
                              + (f"  longest wait {result['longest_wait'] * 1000:.0f} ms"
                                 if "longest_wait" in result else ""), flush=True)
                    shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print()
    print("| architecture | operation | engine op (s) | plain op (s) | ratio | engine process wall / CPU (s) | "
          "plain process wall / CPU (s) | CPU ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for arch in architectures:
        for operation in operations:
            engine, plain = results[(arch, operation, "engine")], results[(arch, operation, "plain")]

            def median(rows: list, key: str) -> float:
                return statistics.median(row[key] for row in rows)

            waits = ""
            if operation == "train":
                waits = (f" (longest GIL wait {median(engine, 'longest_wait') * 1000:.0f} ms vs "
                         f"{median(plain, 'longest_wait') * 1000:.0f} ms)")
            print(f"| {arch} | {operation}{waits} | {median(engine, 'seconds'):.1f} | {median(plain, 'seconds'):.1f} | "
                  f"{median(engine, 'seconds') / median(plain, 'seconds'):.2f} | {median(engine, 'wall'):.1f} / "
                  f"{median(engine, 'cpu'):.1f} | {median(plain, 'wall'):.1f} / {median(plain, 'cpu'):.1f} | "
                  f"{median(engine, 'cpu') / median(plain, 'cpu'):.2f} |")


if __name__ == "__main__":
    main()
