"""Benchmark: `experiments-manager federated simulate` beside plain Flower's `run_simulation`, the same federation.

The federation, the same for both: 10 classes of 32x32x3 coloured blobs under noise (tools/bench_peers.py's
generator), `--clients` clients (3) with non-IID shards of `--samples` images each (1000: 80 % of a client's images
from 4 classes of its own, classes 3c..3c+3 mod 10, the rest from all 10), one shared validation set of 500 images;
bench_peers' convnet of width 16, Adam(3e-3), cross-entropy from logits, accuracy, batch 32; `--rounds` rounds (5)
of 1 local epoch; FedAvg over every client each round; the server evaluates the global model on the validation set
before round 1 and after each round. Flower's Ray backend gets the same resources in both (one CPU per client, at
most the CPUs this process may use).

Kinds, each a process of its own, their order alternating round by round:

- ours: `python -m experiments_manager federated simulate -u SETTINGS --num-clients 3 --rounds 5` in a temporary work
  folder holding a settings module (its `get_input_pipeline` reads client `hparams['procID']`'s shard) and its model
  file, the engine's defaults otherwise (EMA weights, a folder per client, TensorBoard, history, exported versions,
  a checkpoint per round); each client validates after its local epoch (the engine's default).
- ours-noval: the same with `federated_client_validation = False`: the clients only train, as plain Flower's do (the
  same work).
- flower: `python tools/bench_flower.py --child flower`: a `ServerApp` running `FedAvg.start(..., evaluate_fn=...)`
  with the model's initial weights from `keras.utils.set_random_seed(seed)`, a `ClientApp` whose `train` builds and
  compiles the model, sets the global weights and runs `model.fit` for one epoch on its shard (shuffled), and
  `run_simulation(num_supernodes=3, backend_config=...)`; nothing written but a report.

Each run, from a cgroup of its own (cgroup v1's cpuacct and memory, as root: Ray's daemons and actors counted): the
wall time, the CPU time, the peak anonymous memory (sampled every 0.2 s), the time to the end of round 1 (start-up
included) and the median wall time of rounds 2.., the final val_loss and val_accuracy of the global model. The end:
markdown rows for BENCHMARKS.md (medians over the rounds, with their ranges; the ratios ours / flower).

Usage (from the repository root, as root):

    .venv/bin/python tools/bench_flower.py [--rounds 4] [--fed-rounds 5] [--clients 3] [--samples 1000]
        [--kinds ours,ours-noval,flower] [--baseline TREE] [--keep] [--verbose]

`--baseline TREE` adds the kind `ours-before`: ours-noval's command run by the engine of TREE (a git worktree of an
earlier commit, put first on PYTHONPATH), alternated with the others. A tree without `federated_client_validation`
ignores it (its clients validate): compare it with ours then.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_peers import CLASSES, MODEL_FILE, TRAINING_FUNCTIONS, blob_images, compiled, convnet
from bench_sweep import command_line, machine_line  # tools/ is on sys.path

REPO = Path(__file__).resolve().parents[1]
KINDS = ("ours", "ours-noval", "flower")
WITHOUT_CLIENT_VALIDATION = ("ours-noval", "ours-before")
BEFORE = "ours-before"
WIDTH, LEARNING_RATE, BATCH, VAL_SAMPLES, SEED = 16, 3e-3, 32, 500, 7
OWN_CLASSES, OWN_SHARE = 4, 0.8
CGROUPS = Path("/sys/fs/cgroup")


# --- the data: written once, read by both ---------------------------------------------------------------------------

def write_data(folder: Path, clients: int, samples: int) -> None:
    """`client_<c>.npz` (x, y) for each client, non-IID, and the shared `val.npz`."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    for client in range(clients):
        rng = np.random.default_rng(100 + client)
        own = (3 * client + np.arange(OWN_CLASSES)) % CLASSES
        labels = np.where(rng.random(samples) < OWN_SHARE, rng.choice(own, samples),
                          rng.integers(0, CLASSES, samples)).astype(np.int32)
        np.savez(folder / f"client_{client}.npz", x=blob_images(labels, np.random.default_rng(200 + client)),
                 y=labels)
    labels = np.random.default_rng(1).integers(0, CLASSES, VAL_SAMPLES).astype(np.int32)
    np.savez(folder / "val.npz", x=blob_images(labels, np.random.default_rng(1)), y=labels)


# --- ours: a settings module and its model file ---------------------------------------------------------------------

SETTINGS_FILE = '''"""Coloured blobs, federated (tools/bench_flower.py writes this file)."""

import os

import keras
import numpy as np
import tensorflow as tf

workingFolder = "experiments"
session_name = "flower_bench"
model_file = "model_peers.py"
hparams = {"width": @WIDTH@, "learningRate": @LR@, "nbEpoch": 1, "federated": "FedAvg", "minCl": @CLIENTS@,
           "minFit": @CLIENTS@, "rounds": @ROUNDS@, "procID": 0}
enable_federated_learning = True
federated_round_timeout_secs = 600
nbEpoch = 1
random_seed = @SEED@
batch_size = @BATCH@
DATA = @DATA@
@EXTRA@

def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    data = np.load(os.path.join(DATA, f"client_{int(hparams['procID'])}.npz" if isTraining else "val.npz"))
    dataset = tf.data.Dataset.from_tensor_slices((data["x"], data["y"]))
    if isTraining:
        dataset = dataset.shuffle(len(data["y"]), seed=random_seed)
    return dataset.batch(batch_size)


''' + TRAINING_FUNCTIONS


def write_settings(folder: Path, data: Path, arguments: argparse.Namespace, client_validation: bool) -> Path:
    """The federation's settings module and model file in `folder`; returns the settings' path."""
    (folder / "model_peers.py").write_text(MODEL_FILE)
    extra = "" if client_validation else "federated_client_validation = False"
    text = SETTINGS_FILE
    for key, value in {"@WIDTH@": WIDTH, "@LR@": repr(LEARNING_RATE), "@CLIENTS@": arguments.clients,
                       "@ROUNDS@": arguments.fed_rounds, "@SEED@": SEED, "@BATCH@": BATCH,
                       "@DATA@": repr(str(data)), "@EXTRA@": extra}.items():
        text = text.replace(key, str(value))
    (folder / "settings_flower_bench.py").write_text(text)
    return folder / "settings_flower_bench.py"


def ours_outcome(folder: Path) -> dict[str, Any]:
    """The server's last row of history.csv (the global model after the last round) and its rounds."""
    (history,) = (folder / "experiments").glob("*/history.csv")
    with open(history, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {"val_loss": float(rows[-1]["val_loss"]), "val_accuracy": float(rows[-1]["val_accuracy"]),
            "rounds": len(rows)}


def ours_rounds_done(folder: Path) -> int:
    """Rounds the server has recorded so far (history.csv's rows)."""
    found = next((folder / "experiments").glob("*/history.csv"), None)
    if found is None:
        return 0
    try:
        return max(0, len(found.read_text().splitlines()) - 1)
    except OSError:
        return 0


# --- plain Flower, in a child process --------------------------------------------------------------------------------

def child_flower(arguments: argparse.Namespace) -> None:
    """Plain Flower's simulation of the same federation; prints a report (JSON) as its last line."""
    import keras
    import numpy as np
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    data, progress = Path(arguments.data), Path(arguments.folder) / "progress.txt"
    report: dict[str, Any] = {}
    client = ClientApp()

    @client.train()
    def train(message: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        keras.utils.set_random_seed(SEED + partition)
        model = compiled(convnet(WIDTH), LEARNING_RATE)
        model.set_weights(message.content["arrays"].to_numpy_ndarrays())
        shard = np.load(data / f"client_{partition}.npz")
        model.fit(shard["x"], shard["y"], batch_size=BATCH, epochs=1, shuffle=True, verbose=0)
        reply = RecordDict({"arrays": ArrayRecord(model.get_weights()),
                            "metrics": MetricRecord({"num-examples": len(shard["y"])})})
        return Message(reply, reply_to=message)

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        keras.utils.set_random_seed(SEED)
        model = compiled(convnet(WIDTH), LEARNING_RATE)
        validation = np.load(data / "val.npz")

        def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            model.set_weights(arrays.to_numpy_ndarrays())
            loss, accuracy = model.evaluate(validation["x"], validation["y"], batch_size=BATCH, verbose=0)
            report.update(val_loss=float(loss), val_accuracy=float(accuracy), rounds=server_round)
            with open(progress, "a") as handle:
                handle.write(f"{server_round} {time.time()}\n")
            return MetricRecord({"loss": float(loss), "accuracy": float(accuracy)})

        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=arguments.clients,
                          min_available_nodes=arguments.clients)
        strategy.start(grid=grid, initial_arrays=ArrayRecord(model.get_weights()), num_rounds=arguments.fed_rounds,
                       evaluate_fn=evaluate)

    cpus = max(1, min(len(os.sched_getaffinity(0)), arguments.clients))
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": cpus, "num_gpus": 0, "logging_level": "ERROR", "log_to_driver": True,
                             "include_dashboard": False}}
    run_simulation(server_app=server, client_app=client, num_supernodes=arguments.clients, backend_config=backend)
    print(json.dumps(report), flush=True)


# --- measuring: a cgroup per run -------------------------------------------------------------------------------------

class Cgroup:
    """A cgroup v1 pair (cpuacct, memory) of one run: its processes, Ray's included, and what they used."""

    def __init__(self, name: str) -> None:
        self.paths = [CGROUPS / "cpuacct" / name, CGROUPS / "memory" / name]
        for path in self.paths:
            path.mkdir()

    def enter(self) -> None:
        """Moves the calling process into both (a `preexec_fn`: the child, before it runs the command)."""
        for path in self.paths:
            (path / "cgroup.procs").write_text(str(os.getpid()))

    def cpu_seconds(self) -> float:
        return int((self.paths[0] / "cpuacct.usage").read_text()) / 1e9

    def anonymous_bytes(self) -> int:
        fields = dict(line.split() for line in (self.paths[1] / "memory.stat").read_text().splitlines())
        return int(fields["rss"])  # anonymous memory (huge pages included)

    def remove(self) -> None:
        """Kills what is left in it (a Ray daemon that outlived its driver), then removes it."""
        for _ in range(50):
            pids = [int(pid) for pid in (self.paths[1] / "cgroup.procs").read_text().split()]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        for path in self.paths:
            path.rmdir()


def measured(kind: str, round_number: int, root: Path, data: Path, arguments: argparse.Namespace) -> dict[str, Any]:
    """Runs one kind in a new process in its own folder under `root`; what it found and what it cost."""
    folder = root / f"{kind}-r{round_number}"
    folder.mkdir(parents=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tools")]))
    if kind.startswith("ours"):
        settings = write_settings(folder, data, arguments, kind not in WITHOUT_CLIENT_VALIDATION)
        command = [sys.executable, "-m", "experiments_manager", "federated", "simulate", "-u", settings.name,
                   "--num-clients", str(arguments.clients), "--rounds", str(arguments.fed_rounds)]
        if kind == BEFORE:
            env["PYTHONPATH"] = str(Path(arguments.baseline).resolve()) + os.pathsep + env["PYTHONPATH"]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--folder", str(folder),
                   "--data", str(data), "--clients", str(arguments.clients), "--fed-rounds", str(arguments.fed_rounds)]
    group = Cgroup(f"bench_flower_{os.getpid()}_{kind}_{round_number}")
    log, out = folder / "output.log", folder / "report.json"
    round_ends: dict[int, float] = {}
    peak = 0
    try:
        start = time.perf_counter()
        with open(log, "wb") as errors, open(out, "wb") as output:
            process = subprocess.Popen(command, cwd=folder, env=env, stdout=output, stderr=errors,
                                       preexec_fn=group.enter)
            while process.poll() is None:
                peak = max(peak, group.anonymous_bytes())
                done = (ours_rounds_done(folder) if kind.startswith("ours")
                        else len((folder / "progress.txt").read_text().split("\n")) - 2
                        if (folder / "progress.txt").is_file() else 0)
                for finished in range(1, done + 1):
                    round_ends.setdefault(finished, time.perf_counter() - start)
                time.sleep(0.2)
        wall = time.perf_counter() - start
        cpu = group.cpu_seconds()
    finally:
        group.remove()
    if process.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise SystemExit(f"{kind}, round {round_number}: exit code {process.returncode} ({shlex.join(command)}):\n"
                         + "\n".join(tail))
    result = ours_outcome(folder) if kind.startswith("ours") else json.loads(out.read_text().splitlines()[-1])
    ends = [round_ends[number] for number in sorted(round_ends)]
    per_round = statistics.median(b - a for a, b in zip(ends, ends[1:])) if len(ends) > 1 else float("nan")
    result.update(kind=kind, round=round_number, wall=wall, cpu=cpu, memory=peak / 2**20,
                  first=ends[0] if ends else float("nan"), per_round=per_round,
                  after_last=wall - ends[-1] if ends else float("nan"))
    return result


# --- the report -----------------------------------------------------------------------------------------------------

def run_line(run: dict[str, Any]) -> str:
    return (f"round {run['round']}, {run['kind']:11}: wall {run['wall']:5.1f} s, CPU {run['cpu']:5.1f} s, peak "
            f"anonymous memory {run['memory']:5.0f} MiB, round 1 ended at {run['first']:4.1f} s, later rounds "
            f"{run['per_round']:4.2f} s, {run['after_last']:4.1f} s after the last, val_loss {run['val_loss']:.4f}, "
            f"val_accuracy {run['val_accuracy']:.3f} ({run['rounds']} rounds)")


def span(runs: list[dict[str, Any]], key: str, form: str) -> str:
    """'median (lowest-highest)' of `key` over `runs`."""
    values = [float(run[key]) for run in runs]
    if len(values) == 1:
        return format(values[0], form)
    return f"{format(statistics.median(values), form)} ({format(min(values), form)}-{format(max(values), form)})"


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(run[key]) for run in runs)


def table(runs: dict[str, list[dict[str, Any]]], kinds: list[str]) -> list[str]:
    """The markdown rows: medians (ranges) per kind, then ours / flower."""
    keys = [("wall", ".1f"), ("cpu", ".1f"), ("memory", ".0f"), ("first", ".1f"), ("per_round", ".2f"),
            ("after_last", ".1f"), ("val_loss", ".4f"), ("val_accuracy", ".3f")]
    header = ["kind", "wall (s)", "CPU (s)", "peak anonymous memory (MiB)", "round 1 ends at (s)",
              "a later round (s)", "after the last round (s)", "final val_loss", "final val_accuracy"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for kind in kinds:
        lines.append("| " + " | ".join([kind] + [span(runs[kind], key, form) for key, form in keys]) + " |")
    for ours in (kind for kind in kinds if kind.startswith("ours")):
        if "flower" in kinds:
            cells = [f"{ours} / flower"] + [f"{median(runs[ours], key) / median(runs['flower'], key):.2f}"
                                            for key, _ in keys]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="runs of each kind, the order alternating (default 4)")
    parser.add_argument("--fed-rounds", type=int, default=5, help="the federation's rounds (default 5)")
    parser.add_argument("--clients", type=int, default=3, help="simulated clients (default 3)")
    parser.add_argument("--samples", type=int, default=1000, help="training images per client (default 1000)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"a subset of {','.join(KINDS)}")
    parser.add_argument("--baseline", metavar="TREE", help="also run ours with the engine of this source tree")
    parser.add_argument("--keep", action="store_true", help="keep the work folders (printed)")
    parser.add_argument("--verbose", action="store_true", help="a line per run as it ends")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child == "flower":
        child_flower(arguments)
        return
    if os.geteuid() != 0 or not (CGROUPS / "cpuacct").is_dir() or not (CGROUPS / "memory").is_dir():
        print("bench_flower: needs root and cgroup v1's cpuacct and memory (to count Ray's processes)",
              file=sys.stderr)
        sys.exit(2)
    kinds = [kind for kind in arguments.kinds.split(",") if kind] + ([BEFORE] if arguments.baseline else [])
    root = Path(tempfile.mkdtemp(prefix="bench_flower_"))
    write_data(root / "data", arguments.clients, arguments.samples)
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    try:
        for round_number in range(arguments.rounds):
            order = kinds[round_number % len(kinds):] + kinds[:round_number % len(kinds)]
            for kind in order:
                run = measured(kind, round_number, root, root / "data", arguments)
                runs[kind].append(run)
                if arguments.verbose:
                    print(run_line(run), flush=True)
    finally:
        if arguments.keep:
            print(f"work folders: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nCommand: `{command_line()}`\nMachine: {machine_line()}\n")
    print("\n".join(table(runs, kinds)))


if __name__ == "__main__":
    main()
