"""Benchmark: edge exports against the SavedModel, for the regression, classification and timeseries examples.

Each example is trained once (`train`, in its own process), then exported with `export RUN --all` (its own process):
the parity table the lab picks from (size, |diff|, the compiled metrics, top-1 agreement, latency, throughput).
Then, in this process, the batch-1 latency of the SavedModel (`serving_default` called in-process) and of each
exported file is measured again in rounds that alternate the order of the models (>= 4 rounds, each model
`--seconds` a round), with the CPU time per call beside the wall time: what the speed-up rests on.

Targets (issue 32): LiteRT int8 batch-1 p50 >= 10x faster than the SavedModel in-process; its accuracy within 1 point
of the SavedModel's (the classifier; the regressions' MSE ratio is shown).

Usage (from the repository root):

    .venv/bin/python tools/bench_edge.py [--examples regression classification timeseries] [--epochs N]
                                         [--rounds 4] [--seconds 1] [--threads N]
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
from typing import Optional

from bench_ema import EXAMPLES  # the three examples: (settings file, working folder); tools/ is on sys.path

REPO = Path(__file__).resolve().parents[1]
SPEEDUP_TARGET = 10.0


def cli(workdir: Path, *arguments: str) -> str:
    """Runs `python -m experiments_manager ARGUMENTS` in `workdir`; returns its stdout."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "experiments_manager", *arguments]
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def train_and_export(workdir: Path, example: str, epochs: int, threads: Optional[int]) -> Path:
    """The example's run folder, trained and exported with `export --all`."""
    settings, working_folder = EXAMPLES[example]
    cli(workdir, "train", "-u", settings, *(["--hparam", f"nbEpoch={epochs}"] if epochs else []))
    (run,) = (workdir / working_folder).glob("*/run.json")
    run = run.parent
    cli(workdir, "export", str(run), "--all", *(["--threads", str(threads)] if threads else []))
    return run


def alternate(run: Path, rounds: int, seconds: float, threads: Optional[int]) -> tuple:
    """{model: [(p50, p99, cpu) per round]}: the SavedModel and every export, their order reversed each round."""
    from experiments_manager.edge.data import named_inputs
    from experiments_manager.edge.parity import ParityRow
    from experiments_manager.edge.runtime import SavedModelModel, open_model
    from experiments_manager.edge.timing import timed_calls

    rows = [ParityRow.from_json(row) for row in json.loads((run / "edge" / "parity.json").read_text())["rows"]]
    models = {"savedmodel": SavedModelModel(run / rows[0].file)}
    for row in rows[1:]:
        models[f"{row.format} {row.quantize}"] = open_model(run / row.file, threads)
    inputs = models["savedmodel"].tensors()["inputs"]
    import numpy as np

    sample = named_inputs([np.random.default_rng(0).uniform(-1, 1, [1] + tensor["shape"][1:]) for tensor in inputs],
                          inputs, "bench")
    found = {name: [] for name in models}
    order = list(models)
    for index in range(rounds):
        for name in (order if index % 2 == 0 else order[::-1]):
            timed = timed_calls(models[name], sample, seconds)
            found[name].append((timed.percentile(0.5), timed.percentile(0.99), timed.cpu_ms))
    return rows, found


def report(example: str, run: Path, rows: list, found: dict) -> None:
    print(f"\n### {example}\n")
    print((run / "edge" / "parity.md").read_text().split("\n\n", 1)[-1])
    print(f"Batch 1, {len(found['savedmodel'])} alternating rounds (median of the rounds' values):\n")
    print("| model | p50 ms | p99 ms | CPU ms / call | p50 speed-up vs SavedModel |")
    print("|---|---|---|---|---|")
    base = statistics.median(value[0] for value in found["savedmodel"])
    for name, values in found.items():
        p50 = statistics.median(value[0] for value in values)
        p99 = statistics.median(value[1] for value in values)
        cpu = statistics.median(value[2] for value in values)
        print(f"| {name} | {p50:.4f} | {p99:.4f} | {cpu:.4f} | {base / p50:.1f}x |")
    int8 = next(row for row in rows if (row.format, row.quantize) == ("litert", "int8"))
    speedup = base / statistics.median(value[0] for value in found["litert int8"])
    if "accuracy" in rows[0].metrics:
        delta = 100 * (int8.metrics["accuracy"] - rows[0].metrics["accuracy"])
        quality = f"accuracy {100 * int8.metrics['accuracy']:.2f} % vs {100 * rows[0].metrics['accuracy']:.2f} % " \
                  f"({delta:+.2f} points)"
        met = abs(delta) <= 1.0
    else:
        ratio = int8.metrics["loss"] / rows[0].metrics["loss"]
        quality, met = f"loss {int8.metrics['loss']:.4g} vs {rows[0].metrics['loss']:.4g} ({ratio:.3f}x)", ratio <= 1.1
    verdict = "met" if speedup >= SPEEDUP_TARGET and met else "NOT met"
    print(f"\n- LiteRT int8: {speedup:.1f}x the SavedModel's batch-1 speed (target >= {SPEEDUP_TARGET:g}x); {quality}: "
          f"targets {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="+", choices=sorted(EXAMPLES), default=sorted(EXAMPLES))
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every training (default 10)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (default 4, at least 4)")
    parser.add_argument("--seconds", type=float, default=1.0, help="each model's time a round (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="the edge runtimes' threads (default: every core)")
    arguments = parser.parse_args()
    if arguments.rounds < 4:
        parser.error(f"--rounds: expected at least 4, got {arguments.rounds}")
    from experiments_manager.utils.native_noise import import_tensorflow_quietly

    import_tensorflow_quietly()
    print(f"{os.cpu_count()} cores; {arguments.epochs} epochs a training; {arguments.rounds} rounds of "
          f"{arguments.seconds:g} s a model")
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        shutil.copytree(REPO / "examples", workdir / "examples")
        for example in arguments.examples:
            print(f"{example}: training and exporting ...", flush=True)
            run = train_and_export(workdir, example, arguments.epochs, arguments.threads)
            rows, found = alternate(run, arguments.rounds, arguments.seconds, arguments.threads)
            report(example, run, rows, found)


if __name__ == "__main__":
    main()
