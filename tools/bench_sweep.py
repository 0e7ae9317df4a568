"""Benchmark: what the sweep driver adds to each trial, and what `--parallelism 2` (Spark) buys on this machine.

1. A sequential sweep of N trials on the regression example, then, side by side,
   `experiments-manager train` with each trial's hparams. Per-trial overhead =
   median time from one trial's start to the next one's − the median `train` wall
   time. It covers the trial process, hyperopt's suggestion, saving the Trials,
   results.csv, the plot and sweep.json after each trial.
2. The same sweep (same seed, so the same points) with `--parallelism 2`:
   speed-up = sequential sweep wall / parallel sweep wall, both end to end (the
   parallel one includes starting Spark), and without each driver's start-up.

Usage (from the repository root):

    .venv/bin/python tools/bench_sweep.py [--trials 4] [--epochs 3] [--samples 2000]
"""

import argparse
import csv
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = "examples/regression/mysettings_curve_fitting.py"
WORKING_FOLDER = "experiments/examples/curve_fitting"


def command(*arguments):
    return [sys.executable, "-m", "experiments_manager", *arguments]


def bench_workdir(root, samples):
    shutil.copytree(REPO / "examples", root / "examples")
    path = root / SETTINGS
    path.write_text(path.read_text() + f"\nnb_train_samples = {samples}\nearly_stopping_patience = 1000\n")
    return root


def timed_sweep(workdir, trials, epochs, seed, parallelism):
    """(wall seconds, seconds at which each trial started, rows of results.csv).

    A trial has started when its log appears in the sweep's trials/ folder.
    """
    working_folder = workdir / WORKING_FOLDER
    before = set(working_folder.glob("*_sweep_*")) if working_folder.is_dir() else set()
    arguments = ["sweep", "-u", SETTINGS, "--max-evals", str(trials), "--seed", str(seed),
                 "--hparam", f"nbEpoch={epochs}", "--parallelism", str(parallelism)]
    start = time.perf_counter()
    process = subprocess.Popen(command(*arguments), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder, started = None, {}
    while process.poll() is None:
        if folder is None:
            new = set(working_folder.glob("*_sweep_*")) - before if working_folder.is_dir() else set()
            folder = next(iter(new), None)
        if folder is not None:
            for log in (folder / "trials").glob("*.log"):
                started.setdefault(log.name, time.perf_counter() - start)
        time.sleep(0.02)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"sweep failed with exit code {process.returncode}")
    with open(folder / "results.csv", newline="") as handle:
        return wall, sorted(started.values()), list(csv.DictReader(handle))


def timed_train(workdir, row, epochs):
    arguments = ["train", "-u", SETTINGS, "--hparam", f"nbEpoch={epochs}",
                 "--hparam", f"learningRate={row['learningRate']}", "--hparam", f"hiddenNeurons={row['hiddenNeurons']}"]
    start = time.perf_counter()
    subprocess.run(command(*arguments), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=11)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as root:
        workdir = bench_workdir(Path(root), arguments.samples)
        sequential, sequential_start, rows = timed_sweep(workdir, arguments.trials, arguments.epochs, arguments.seed, 1)
        trains = [timed_train(workdir, row, arguments.epochs) for row in rows]
        parallel, parallel_start, parallel_rows = timed_sweep(workdir, arguments.trials, arguments.epochs,
                                                              arguments.seed, 2)
    train = statistics.median(trains)
    cycles = [later - earlier for earlier, later in zip(sequential_start, sequential_start[1:])]
    cycle = statistics.median(cycles)
    trial_process = statistics.median(float(row["seconds"]) for row in rows)
    same_points = sorted(row["learningRate"] for row in rows) == sorted(row["learningRate"] for row in parallel_rows)
    print(f"{arguments.trials} trials, {arguments.epochs} epochs, {arguments.samples} samples, seed {arguments.seed}")
    print(f"train (CLI) wall, median of {len(trains)}:              {train:6.2f} s  "
          f"({', '.join(f'{t:.2f}' for t in trains)})")
    print(f"sequential sweep, trial start to next start:  {cycle:6.2f} s  ({', '.join(f'{c:.2f}' for c in cycles)})")
    print(f"  of which the trial process (median):        {trial_process:6.2f} s")
    print(f"  per-trial overhead vs train:                {cycle - train:+6.2f} s = {(cycle - train) / train:+.1%} "
          "(target <= +10%)")
    print(f"  driver start-up (to the first trial):       {sequential_start[0]:6.2f} s, wall {sequential:.2f} s")
    print(f"parallel sweep (--parallelism 2) wall:        {parallel:6.2f} s  (start-up incl. Spark "
          f"{parallel_start[0]:.2f} s; same points as sequential: {same_points})")
    print(f"  speed-up, end to end:                       {sequential / parallel:6.2f}x")
    print(f"  speed-up, from the first trial's start:     "
          f"{(sequential - sequential_start[0]) / (parallel - parallel_start[0]):6.2f}x")


if __name__ == "__main__":
    main()
