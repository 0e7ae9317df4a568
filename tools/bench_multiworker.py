"""Benchmark: one worker against two (`train --workers 2`, MultiWorkerMirroredStrategy over loopback).

Both train the regression example with the same global batch, so two workers
each compute half of every step and then all-reduce the gradients. Timed inside
training by a callback in the settings (`addon_callbacks`): the train part of
each epoch (first step to last, validation excluded), first epoch excluded
(tracing). Reported per model size:

- step time with 1 and 2 workers, and the throughput ratio (2 workers / 1);
- communication overhead per step = t(2 workers) - t(1 worker) / 2, the time
  above a perfect split of the compute (gradient all-reduce, the engine's
  stop-signal agreement every 10 steps, and the lock-step wait).

Usage (from the repository root):

    .venv/bin/python tools/bench_multiworker.py [--hidden 32 512 1024] [--epochs 3] [--samples 20000]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = "examples/regression/mysettings_curve_fitting.py"
TIMING_CALLBACK = '''
import json as _json, os as _os, time as _time

class _StepTimer(tf.keras.callbacks.Callback):
    """Train time per epoch, written by each worker to timings-<task index>.json."""
    def on_epoch_begin(self, epoch, logs=None):
        self.started, self.steps = _time.perf_counter(), 0
    def on_train_batch_end(self, batch, logs=None):
        self.steps, self.ended = self.steps + 1, _time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        index = _json.loads(_os.environ.get("TF_CONFIG") or '{"task": {"index": 0}}')["task"]["index"]
        path = f"timings-{index}.json"
        rows = _json.load(open(path)) if _os.path.exists(path) else []
        rows.append({"epoch": epoch, "steps": self.steps, "seconds": self.ended - self.started})
        _json.dump(rows, open(path, "w"))

def addon_callbacks(model, train_samples, val_samples):
    return [_StepTimer()]
'''


def bench_settings(workdir, samples):
    shutil.copytree(REPO / "examples", workdir / "examples")
    path = workdir / "examples/regression/bench.py"
    path.write_text((REPO / SETTINGS).read_text() + f"\nnb_train_samples = {samples}\n"
                    + "early_stopping_patience = 1000\n" + TIMING_CALLBACK)
    return path


def step_seconds(workdir, settings, hidden, epochs, workers):
    """Median train seconds per step over epochs 2.. of one run (as seen by the chief)."""
    for old in workdir.glob("timings-*.json"):
        old.unlink()
    command = [sys.executable, "-m", "experiments_manager", "train", "-u", str(settings),
               "--hparam", f"nbEpoch={epochs}", "--hparam", f"hiddenNeurons={hidden}", "--workers", str(workers)]
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    environment.pop("TF_CONFIG", None)
    subprocess.run(command, cwd=workdir, env=environment, check=True, capture_output=True)
    rows = json.loads((workdir / "timings-0.json").read_text())[1:]
    return statistics.median(row["seconds"] / row["steps"] for row in rows), rows[0]["steps"]


def parameters(hidden):
    return (1 * hidden + hidden) + (hidden * hidden + hidden) + (hidden + 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 512, 1024])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20000)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        settings = bench_settings(workdir, arguments.samples).relative_to(workdir)
        print(f"{'parameters':>10} {'steps':>6} {'1 worker ms':>12} {'2 workers ms':>13} "
              f"{'throughput 2/1':>15} {'overhead ms/step':>17}")
        for hidden in arguments.hidden:
            one, steps = step_seconds(workdir, settings, hidden, arguments.epochs, 1)
            two, _ = step_seconds(workdir, settings, hidden, arguments.epochs, 2)
            print(f"{parameters(hidden):>10} {steps:>6} {one * 1e3:>12.2f} {two * 1e3:>13.2f} "
                  f"{one / two:>14.2f}x {(two - one / 2) * 1e3:>17.2f}", flush=True)


if __name__ == "__main__":
    main()
