"""Benchmark: the engine's `train` against a plain `model.fit` on the same model, data and EMA optimizer.

Each measurement runs in its own process (so TensorFlow state never carries over),
alternating engine and plain runs, and reports the median of each and their ratio.
Timed: from building the input pipelines to the end of training (the engine's run
includes its export, checkpoints, TensorBoard, curves and projector).
Also times `experiments-manager --help`.

Usage (from the repository root):

    .venv/bin/python tools/bench_train.py [--rounds 2] [--samples 100000] [--epochs 6] [--every-epoch]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = "examples/regression/mysettings_curve_fitting.py"


def bench_settings(workdir, samples, every_epoch):
    """The regression example with more samples; exports on improvement (the default) or every epoch."""
    shutil.copytree(REPO / "examples", workdir / "examples")
    path = workdir / "examples/regression/bench.py"
    path.write_text(
        (REPO / SETTINGS).read_text()
        + f"\nnb_train_samples = {samples}\nsave_only_last_best_model = {not every_epoch}\n"
        + "early_stopping_patience = 1000\n"
    )
    return path


def run_engine(settings, epochs):
    from experiments_manager.experiment import Experiment
    from experiments_manager.settings import load_settings
    from experiments_manager.training import Trainer

    loaded = load_settings(settings, {"nbEpoch": epochs})
    trainer = Trainer(Experiment.create(loaded, ["bench"]), loaded)
    start = time.perf_counter()
    outcome = trainer.run()
    assert outcome.status == "finished", outcome.reason
    return time.perf_counter() - start


def run_plain(settings, epochs):
    import keras

    from experiments_manager.settings import load_settings
    from experiments_manager.ema import WeightAverages
    from experiments_manager.training import build_model

    loaded = load_settings(settings, {"nbEpoch": epochs})
    keras.utils.set_random_seed(loaded.random_seed)
    start = time.perf_counter()
    train = loaded.get_input_pipeline("", True, loaded.batch_size, epochs)
    val = loaded.get_input_pipeline("", False, loaded.batch_size, epochs)
    model = build_model(loaded)
    loss = loaded.get_total_loss(model)
    averages = WeightAverages(loaded.ema_momentum, warmup=loaded.ema_warmup)
    optimizer = averages.attach(loaded.get_optimizer(model, loss, loaded.get_learningRate()))
    model.compile(optimizer=optimizer, loss=loss, metrics=loaded.get_metrics(model, loss))
    model.fit(train, validation_data=val, epochs=epochs, verbose=2, shuffle=False)
    return time.perf_counter() - start


def measure(kind, settings, epochs, workdir):
    command = [sys.executable, __file__, "--worker", kind, "--settings", str(settings), "--epochs", str(epochs)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["seconds"]


def help_wall_time(repeats=10):
    program = Path(sys.executable).with_name("experiments-manager")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([str(program), "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=100000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--every-epoch", action="store_true", help="export every epoch (worst case)")
    parser.add_argument("--worker", choices=("engine", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    if arguments.worker:
        run = run_engine if arguments.worker == "engine" else run_plain
        print(json.dumps({"seconds": run(arguments.settings, arguments.epochs)}))
        return

    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        settings = bench_settings(workdir, arguments.samples, arguments.every_epoch)
        engine, plain = [], []
        for round_index in range(arguments.rounds):
            engine.append(measure("engine", settings, arguments.epochs, workdir))
            plain.append(measure("plain", settings, arguments.epochs, workdir))
            print(f"round {round_index + 1}: engine {engine[-1]:.2f} s, plain fit {plain[-1]:.2f} s", flush=True)
    ratio = statistics.median(engine) / statistics.median(plain)
    exports = "every epoch" if arguments.every_epoch else "on improvement"
    print(f"train, {arguments.samples} samples x {arguments.epochs} epochs, export {exports}:")
    print(f"  engine median {statistics.median(engine):.2f} s, plain model.fit median {statistics.median(plain):.2f} s")
    print(f"  ratio engine/plain = {ratio:.3f}  (target <= 1.05)")
    print(f"experiments-manager --help: median {help_wall_time():.3f} s  (target <= 0.5 s)")


if __name__ == "__main__":
    main()
