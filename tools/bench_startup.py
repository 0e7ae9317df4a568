"""Benchmark: how soon `experiments-manager train` says something, and what it says before training.

Each measurement is its own process, the kinds alternating round by round:

- `import-tensorflow`: `python -c "import tensorflow"`, the floor every command that trains pays;
- `import-ours-then-tensorflow`: `python -c "import experiments_manager, tensorflow"`, the same floor as our commands
  pay it (Keras's optional imports, scikit-learn and pyplot, deferred: experiments_manager/utils/deferred_imports.py);
- `settings-imports`: `python -c "import experiments_manager, tensorflow; from hyperopt import hp"`, what a process
  pays before it reads a seeds-style settings file's first line of its own (hyperopt's ATPE and networkx deferred);
- `train`: `experiments-manager train -u <regression example> --hparam nbEpoch=1` from this checkout;
- `settings-imports@REV`, `train@REV` (with `--baseline REV`): the same commands from a git revision (a temporary
  worktree), side by side.

Reported per kind: median time to the first line, to the `Experiment folder` line and to the end; the process' CPU
time; and how many lines of TensorFlow's native start-up noise (absl-formatted lines, `failed call to cuInit`)
the user saw.

Usage (from the repository root):

    .venv/bin/python tools/bench_startup.py [--rounds 4] [--baseline HEAD~1]
"""

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = "examples/regression/mysettings_curve_fitting.py"
SETTINGS_IMPORTS = "import experiments_manager, tensorflow; from hyperopt import hp"
ABSL_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl)")


def measure(command, env, cwd):
    """Runs `command`; returns seconds to its first line, to its folder line, to its end, its CPU seconds, and
    its noise lines."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    first = folder = None
    noise = 0
    for line in process.stdout:
        moment = time.perf_counter() - start
        first = moment if first is None else first
        if folder is None and line.startswith("Experiment folder: "):
            folder = moment
        noise += bool(ABSL_LINE.match(line) or "cuInit" in line)
    if process.wait() != 0:
        raise SystemExit(f"{' '.join(command)}: exit code {process.returncode}")
    end = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"first line": first, "folder line": folder, "end": end, "cpu": cpu, "noise lines": noise}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--baseline", metavar="REV", help="also time the command from this git revision")
    arguments = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    shutil.copytree(REPO / "examples", workdir / "examples")
    train = ["-m", "experiments_manager", "train", "-u", SETTINGS, "--hparam", "nbEpoch=1"]
    kinds = {"import-tensorflow": ([sys.executable, "-c", "import tensorflow"], REPO),
             "import-ours-then-tensorflow": ([sys.executable, "-c", "import experiments_manager, tensorflow"], REPO),
             "settings-imports": ([sys.executable, "-c", SETTINGS_IMPORTS], REPO),
             "train": ([sys.executable, *train], REPO)}
    if arguments.baseline:
        tree = workdir / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), arguments.baseline],
                       check=True, capture_output=True)
        kinds[f"settings-imports@{arguments.baseline}"] = ([sys.executable, "-c", SETTINGS_IMPORTS], tree)
        kinds[f"train@{arguments.baseline}"] = ([sys.executable, *train], tree)
    results = {kind: [] for kind in kinds}
    try:
        for round_number in range(arguments.rounds):
            for kind, (command, source) in kinds.items():
                env = dict(os.environ, PYTHONPATH=str(source), PYTHONUNBUFFERED="1")
                results[kind].append(measure(command, env, workdir))
                print(f"round {round_number + 1}/{arguments.rounds} {kind}: {results[kind][-1]}", flush=True)
    finally:
        if arguments.baseline:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(workdir / "baseline")],
                           check=False, capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nmedians over {arguments.rounds} rounds (seconds):")
    print(f"{'kind':28} {'first line':>10} {'folder line':>11} {'end':>7} {'cpu':>7} {'noise lines':>11}")
    for kind, runs in results.items():
        def median(key):
            values = [run[key] for run in runs if run[key] is not None]
            return f"{statistics.median(values):.2f}" if values else "-"
        print(f"{kind:28} {median('first line'):>10} {median('folder line'):>11} {median('end'):>7} "
              f"{median('cpu'):>7} {median('noise lines'):>11}")


if __name__ == "__main__":
    main()
