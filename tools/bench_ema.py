"""Benchmark: validation loss of the EMA weights against the raw weights, per epoch, with and without the warm-up.

Each example is trained twice from the same seed, in its own process: once with
Keras' fixed EMA momentum from the first step (`ema_warmup = False`, the engine
before issue 15) and once with the warmed-up decay (the default). Early stopping
is switched off so both runs cover every epoch. history.csv holds both
validations of every epoch (`val_loss`: the EMA weights the run exports;
`val_loss_raw`: the weights being trained), and the raw columns of the two runs
must agree (the averages do not change training).

Targets (issue 15): EMA validation loss <= 1.1 x raw at every epoch, and <= raw
on average over the last half of the run.

Usage (from the repository root):

    .venv/bin/python tools/bench_ema.py [--examples regression classification timeseries] [--epochs N]
                                        [--warmup-offset C]

`--warmup-offset C` trains the warm-up runs with `(1 + n) / (C + n)` instead of the engine's 40 (10 is TF
Model Garden's), to compare warm-up lengths.
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "regression": ("examples/regression/mysettings_curve_fitting.py", "experiments/examples/curve_fitting"),
    "classification": ("examples/classification/mysettings_image_classification.py",
                       "experiments/examples/classification"),
    "timeseries": ("examples/timeseries/mysettings_timeseries_forecasting.py", "experiments/examples/timeseries"),
}
VARIANTS = (("fixed", "ema_warmup = False"), ("warmup", "ema_warmup = True"))
EVERY_EPOCH_LIMIT = 1.1


# `python -m experiments_manager` with the warm-up offset replaced (a benchmark-only patch of the constant)
WITH_OFFSET = ("import sys, experiments_manager.training.ema as ema; ema.WARMUP_OFFSET = float(sys.argv.pop(1)); "
               "from experiments_manager.cli import main; sys.exit(main())")


def train(workdir, example, variant_line, epochs, offset=None):
    """Trains one variant; returns {'ema': [...], 'raw': [...]} per epoch."""
    settings, working_folder = EXAMPLES[example]
    variant = workdir / Path(settings).with_name(f"bench_{variant_line.split()[-1].lower()}.py")
    variant.write_text((workdir / settings).read_text() + f"\n{variant_line}\nearly_stopping_patience = 100000\n"
                       + "raw_validation_freq = 1\n")  # the raw weights at every epoch: the comparison per epoch
    output = workdir / working_folder
    shutil.rmtree(output, ignore_errors=True)
    program = ["-c", WITH_OFFSET, str(offset)] if offset else ["-m", "experiments_manager"]
    command = [sys.executable, *program, "train", "-u", str(variant.relative_to(workdir))]
    if epochs:
        command += ["--hparam", f"nbEpoch={epochs}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    (history,) = output.glob("*/history.csv")
    with open(history, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {"ema": [float(row["val_loss"]) for row in rows], "raw": [float(row["val_loss_raw"]) for row in rows]}


def report(example, runs):
    fixed, warm = runs["fixed"], runs["warmup"]
    epochs = len(warm["raw"])
    drift = max(abs(a - b) / b for a, b in zip(fixed["raw"], warm["raw"]))
    print(f"\n{example}: validation loss per epoch (raw weights of the two runs agree within {drift:.1e})")
    print("| epoch | raw weights | EMA, fixed momentum | ratio | EMA, warm-up | ratio |")
    print("|---|---|---|---|---|---|")
    for epoch in range(epochs):
        raw = warm["raw"][epoch]
        print(f"| {epoch + 1} | {raw:.4f} | {fixed['ema'][epoch]:.4f} | {fixed['ema'][epoch] / fixed['raw'][epoch]:.2f} "
              f"| {warm['ema'][epoch]:.4f} | {warm['ema'][epoch] / raw:.2f} |")
    for name, run in (("fixed momentum", fixed), ("warm-up", warm)):
        ratios = [ema / raw for ema, raw in zip(run["ema"], run["raw"])]
        half = epochs // 2
        ema_mean = sum(run["ema"][half:]) / (epochs - half)
        raw_mean = sum(run["raw"][half:]) / (epochs - half)
        worst = max(range(epochs), key=lambda index: ratios[index])
        verdict = "met" if ratios[worst] <= EVERY_EPOCH_LIMIT and ema_mean <= raw_mean else "NOT met"
        print(f"- {name}: worst EMA/raw {ratios[worst]:.2f} (epoch {worst + 1}); last {epochs - half} epochs mean "
              f"EMA {ema_mean:.4f} vs raw {raw_mean:.4f} ({ema_mean / raw_mean:.3f}x): targets {verdict}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="+", choices=sorted(EXAMPLES), default=sorted(EXAMPLES))
    parser.add_argument("--epochs", type=int, help="epochs of every run (default: each example's nbEpoch)")
    parser.add_argument("--warmup-offset", type=float, help="C of the warm-up runs' (1 + n) / (C + n) (default 40)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        shutil.copytree(REPO / "examples", workdir / "examples")
        for example in arguments.examples:
            runs = {}
            for name, line in VARIANTS:
                print(f"{example}: training with {line} ...", flush=True)
                offset = arguments.warmup_offset if name == "warmup" else None
                runs[name] = train(workdir, example, line, arguments.epochs, offset)
            report(example, runs)


if __name__ == "__main__":
    main()
