"""Per-round cost of a deployed federation against Flower's own floor, side by side in one run.

One real SuperLink and two SuperNodes on loopback (started with `experiments-manager federated superlink|supernode`)
per model size; on them, alternately:
  floor  a bare Flower app: numpy ClientApp that returns the arrays it got (no training), FedAvg ServerApp with no
         evaluation; same parameter count, same Grid (ResponsiveGrid), same Flower settings. What any app pays.
  ours   `experiments-manager federated run` of a Dense MLP of that size: clients train 1 local epoch of 1 batch in
         the SuperNode's persistent worker, the server evaluates and exports the global model every round.

Per round (rounds 2.. of each federation; round 1 installs the app and builds the model), medians over rounds and
repeats:
  round     wall time of the round (end of one server evaluation to the end of the next)
  fit       the slowest client's `model.fit` (ours; the floor's clients do no work)
  overhead  round - fit: what the round costs beyond training (floor: the round itself)
  worker    the slowest client's time in the worker (fit + setting the weights, EMA, run.json), ours only
  server    the server's evaluation + export, ours only
  CPU       CPU seconds per round of every process of the deployment (SuperLink, SuperNodes, SuperExecs,
            ServerApp, ClientApps, workers), from /proc, rounds 2..
Then: idle CPU of the deployment (cores busy while no run is in progress: Flower's polls).

Usage:  python tools/bench_federated.py [--rounds 5] [--repeats 2] [--sizes 1e4,1e6,1e7] [--superexec-poll S]
"""

import argparse
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")

SETTINGS = '''
import numpy as np
import tensorflow as tf
workingFolder = "experiments"
session_name = "bench"
hparams = {"params": 10000, "nbEpoch": 1, "minCl": 2, "minFit": 2, "procID": 0}
model_file = "model_bench.py"
nbEpoch = 1
random_seed = 1
batch_size = 64
federated_round_timeout_secs = 600
def get_learningRate(): return 0.001
def get_optimizer(model, loss, learning_rate): return tf.keras.optimizers.SGD(learning_rate)
def get_total_loss(model): return "mean_squared_error"
def get_metrics(model, loss): return []
def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    x = np.random.default_rng(0).normal(size=(batch_size, 16)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(batch_size)
'''

MODEL = '''
import math
import tensorflow as tf
def model(usersettings):
    width = int(math.sqrt(usersettings.hparams["params"]))
    inputs = tf.keras.Input(shape=(16,))
    hidden = tf.keras.layers.Dense(width, activation="relu")(inputs)
    hidden = tf.keras.layers.Dense(width, activation="relu")(hidden)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(1)(hidden))
'''

FLOOR_APP = '''
"""Flower's floor: a numpy ClientApp that returns what it got, a FedAvg ServerApp without evaluation."""
import json
import math
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.serverapp.strategy import FedAvg

from experiments_manager.federated.grid import ResponsiveGrid

client_app = ClientApp()


@client_app.train()
def train(message, context):
    arrays = message.content["arrays"].to_numpy_ndarrays()
    reply = RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord({"num-examples": 64})})
    return Message(reply, reply_to=message)


server_app = ServerApp()


@server_app.main()
def main(grid, context):
    config = context.run_config
    width = int(math.sqrt(int(config["params"])))
    shapes = [(16, width), (width,), (width, width), (width,), (width, 1), (1,)]  # the bench's Dense MLP
    arrays = [np.zeros(shape, np.float32) for shape in shapes]
    out = Path(config["out"])
    timings, last = [], [time.monotonic()]

    def evaluate(server_round, arrays):
        now = time.monotonic()
        if server_round > 0:
            timings.append({"round_seconds": round(now - last[0], 3), "server_seconds": 0.0})
        last[0] = now
        out.write_text(json.dumps({"rounds_completed": server_round, "round_timings": timings}))
        return MetricRecord({})

    FedAvg(fraction_evaluate=0.0, min_available_nodes=2, min_train_nodes=2).start(
        grid=ResponsiveGrid(grid), initial_arrays=ArrayRecord(arrays), num_rounds=int(config["rounds"]),
        evaluate_fn=evaluate)
'''


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cli(*arguments):
    return [sys.executable, "-m", "experiments_manager", *arguments]


def flwr(*arguments):
    return [str(Path(sys.executable).with_name("flwr")), *arguments]


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(what)


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def tree_cpu_seconds(roots):
    """CPU seconds of the processes `roots` and all their descendants, reaped children included (cutime)."""
    children, stats = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(pid)
        stats[pid] = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    total, todo = 0, list(roots)
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / TICKS


class Deployment:
    """A SuperLink and two SuperNodes through the CLI wrappers, each in its own process group."""

    def __init__(self, folder, env):
        self.folder, self.env = folder, env
        self.address = f"127.0.0.1:{free_port()}"
        self.processes = []

    def start(self):
        log = self.folder / "superlink.log"
        self._start(log, "superlink", "--insecure", "--port", self.address.split(":")[1])
        for index in range(2):
            self._start(self.folder / f"supernode_{index}.log", "supernode", "--insecure", "--superlink",
                        self.address, "--port", str(free_port()), "--partition-id", str(index), "--num-partitions",
                        "2")
        wait_for(lambda: log.read_text().count("Activated node_id") >= 2, 180, "SuperNodes registered")
        wait_for(lambda: all("ready (TensorFlow imported)" in (self.folder / f"supernode_{index}.log").read_text()
                             for index in range(2)), 180, "workers ready")
        home = self.folder / "flwr_cli"
        home.mkdir(exist_ok=True)
        (home / "config.toml").write_text(f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\n'
                                          f'address = "{self.address}"\ninsecure = true\n')
        self.cli_env = dict(self.env, FLWR_HOME=str(home))
        return self

    def _start(self, log, *arguments):
        self.processes.append(subprocess.Popen(cli("federated", *arguments), cwd=self.folder, env=self.env,
                                               stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                               start_new_session=True))

    def cpu(self):
        return tree_cpu_seconds([process.pid for process in self.processes])

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            process.wait(timeout=30)


def follow(progress_file, rounds, deployment, driver):
    """Waits for the federation; returns {round: CPU seconds of the deployment when the round ended}."""
    cpu_at, seen = {}, 0
    while seen < rounds:
        status = read_json(progress_file) or {}
        completed = status.get("rounds_completed", 0)
        if completed > seen:
            cpu_at[completed] = deployment.cpu()
            seen = completed
        if driver.poll() is not None and seen < rounds:
            raise RuntimeError(f"the federation ended after {seen} rounds: {driver.stdout.read()}")
        time.sleep(0.05)
    return cpu_at


def run_floor(deployment, size, rounds, index):
    app = deployment.folder / f"floor_app_{index}"
    app.mkdir()
    out = deployment.folder / f"floor_{index}.json"
    (app / "floor_app.py").write_text(FLOOR_APP)
    (app / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        '[project]\nname = "floor"\nversion = "1.0.0"\ndescription = ""\nlicense = "MIT"\ndependencies = []\n\n'
        '[tool.hatch.build.targets.wheel]\npackages = ["."]\n\n'
        '[tool.flwr.app]\npublisher = "bench"\n\n[tool.flwr.app.components]\nserverapp = "floor_app:server_app"\n'
        'clientapp = "floor_app:client_app"\n\n'
        f'[tool.flwr.app.config]\nparams = {int(size)}\nrounds = {rounds}\nout = "{out}"\n')
    started = subprocess.run(flwr("run", str(app), "--format", "json"), env=deployment.cli_env,
                             capture_output=True, text=True, timeout=300)
    run_id = str(json.loads(started.stdout)["run-id"])
    # like `federated run`, ask Flower for the run's status every 5 s meanwhile (each `flwr ls` is a process)
    driver = subprocess.Popen(
        [sys.executable, "-c", "import json, subprocess, sys, time\n"
         "def status():\n"
         "    try: return json.loads(subprocess.run(sys.argv[1:], capture_output=True).stdout)['runs'][0]['status']\n"
         "    except (ValueError, KeyError, IndexError): return ''\n"
         "while not status().startswith('finished'): time.sleep(5)",
         *flwr("ls", "--run-id", run_id, "--format", "json")],
        env=deployment.cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cpu_at = follow(out, rounds, deployment, driver)
    driver.wait(timeout=300)
    timings = read_json(out)["round_timings"]
    return [{"round": timing["round_seconds"], "fit": 0.0, "worker": 0.0, "server": 0.0} for timing in timings], cpu_at


def run_ours(deployment, size, rounds, index):
    earlier = set((deployment.folder / "experiments").glob("*/run.json"))
    driver = subprocess.Popen(cli("federated", "run", "-u", "settings_bench.py", "--superlink", deployment.address,
                                  "--rounds", str(rounds), "--hparam", f"params={int(size)}"),
                              cwd=deployment.folder, env=deployment.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    runs = wait_for(lambda: list(set((deployment.folder / "experiments").glob("*/run.json")) - earlier), 300,
                    "the server experiment")
    cpu_at = follow(runs[0], rounds, deployment, driver)
    output, _ = driver.communicate(timeout=300)
    run = read_json(runs[0])
    assert driver.returncode == 0 and run["status"] == "finished", output
    served = {}  # round -> [(worker seconds, fit seconds)] of the clients
    for status_file in Path(tempfile.gettempdir()).glob("em-supernode-*/worker.json"):
        for entry in (read_json(status_file) or {}).get("served", []):
            if str(entry.get("run_id")) == str(run["flower_run_id"]) and entry.get("kind") == "train":
                served.setdefault(entry["round"], []).append((entry["seconds"], entry["fit_seconds"] or 0.0))
    rows = []
    for number, timing in enumerate(run["round_timings"], start=1):
        clients = served.get(number, [(math.nan, math.nan)])
        rows.append({"round": timing["round_seconds"], "fit": max(fit for _, fit in clients),
                     "worker": max(seconds for seconds, _ in clients), "server": timing["server_seconds"]})
    return rows, cpu_at


def bench_size(folder, env, size, rounds, repeats):
    deployment = Deployment(folder, env).start()
    measured = {"floor": [], "ours": []}
    cpu = {"floor": [], "ours": []}
    try:
        before = deployment.cpu()
        time.sleep(10)
        idle = (deployment.cpu() - before) / 10
        for repeat in range(repeats):
            kinds = ("floor", "ours") if repeat % 2 == 0 else ("ours", "floor")
            for kind in kinds:
                runner = run_floor if kind == "floor" else run_ours
                rows, cpu_at = runner(deployment, size, rounds, f"{repeat}{kind}")
                measured[kind].extend(rows[1:])
                cpu[kind].append((cpu_at[rounds] - cpu_at[1]) / (rounds - 1))
    finally:
        deployment.stop()
    return measured, cpu, idle


def median(rows, key):
    return statistics.median(row[key] for row in rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="federations of each kind per size, alternated")
    parser.add_argument("--sizes", default="1e4,1e6,1e7")
    parser.add_argument("--verbose", action="store_true", help="also print every measured round (round/fit/server s)")
    parser.add_argument("--superexec-poll", help="FLWR_SUPEREXEC_TASK_POLL_INTERVAL (default: the wrappers')")
    arguments = parser.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", None)
    if arguments.superexec_poll:
        env["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] = arguments.superexec_poll
    print(f"{arguments.rounds} rounds x {arguments.repeats} federations per kind and size; medians of rounds 2..")
    print(f"{'params':>7} {'kind':<6} {'round s':>8} {'fit s':>6} {'overhead s':>10} {'worker s':>8} "
          f"{'server s':>8} {'CPU s/round':>11} {'idle cores':>10}")
    for size in (float(text) for text in arguments.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-federated-") as temporary:
            folder = Path(temporary)
            (folder / "settings_bench.py").write_text(SETTINGS)
            (folder / "model_bench.py").write_text(MODEL)
            env["FLWR_HOME"] = str(folder / "flwr_home")
            measured, cpu, idle = bench_size(folder, env, size, arguments.rounds, arguments.repeats)
        overheads = {}
        for kind in ("floor", "ours"):
            rows = measured[kind]
            if arguments.verbose:
                print(f"        {kind} rounds (round/fit/server s): " + " ".join(
                    f"{row['round']:.2f}/{row['fit']:.2f}/{row['server']:.2f}" for row in rows))
            for row in rows:
                row["overhead"] = row["round"] - row["fit"]
            overheads[kind] = median(rows, "overhead")
            print(f"{size:>7.0e} {kind:<6} {median(rows, 'round'):>8.2f} {median(rows, 'fit'):>6.2f} "
                  f"{overheads[kind]:>10.2f} {median(rows, 'worker'):>8.2f} {median(rows, 'server'):>8.2f} "
                  f"{statistics.median(cpu[kind]):>11.2f} {idle:>10.2f}", flush=True)
        print(f"{size:>7.0e} ours - floor overhead: {overheads['ours'] - overheads['floor']:+.2f} s "
              f"(target <= +0.50); ratio {overheads['ours'] / overheads['floor']:.2f}", flush=True)


if __name__ == "__main__":
    main()
