"""Flower overhead per federated round, deployment mode (real SuperLink + 2 SuperNodes on loopback) and simulation.

Per round, from the server experiment's run.json and the clients' run.json:
  round     wall time of the round (end of one server evaluation to the end of the next)
  fit       the slowest client's local training (`model.fit` of its local epochs)
  overhead  round - fit  (the issue's measure: Flower + everything around the clients' fit)
  of which:
    client setup  slowest client's message time - its fit (settings, model build, checkpoint restore)
    server        the server's evaluation + export of the global model
    flower        the rest: transport, SuperNode polling, a new `flwr-clientapp` process per message
                  (it imports TensorFlow), aggregation

Model sizes: a Dense MLP with ~1e4, 1e6 and 1e7 parameters; 2 clients, 1 local epoch of 1 batch.
Rounds 2.. are averaged (round 1 includes installing the Flower app on each node).

Usage:  python tools/bench_federated.py [--rounds 3] [--sizes 1e4,1e6,1e7] [--modes deployment,simulation]
"""

import argparse
import json
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

SETTINGS = '''
import numpy as np
import tensorflow as tf
workingFolder = "experiments"
session_name = "bench"
hparams = {"params": 10000, "nbEpoch": 1, "minCl": 2, "minFit": 2, "minEval": 2, "procID": 0,
           "fraction_evaluate": 0.0}
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


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cli(*arguments):
    return [sys.executable, "-m", "experiments_manager", *arguments]


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError(what)


def deployment(folder, env, size, rounds):
    port = free_port()
    address = f"127.0.0.1:{port}"
    log = folder / "superlink.log"
    processes = [subprocess.Popen(cli("federated", "superlink", "--insecure", "--port", str(port)), cwd=folder,
                                  env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)]
    try:
        for index in range(2):
            processes.append(subprocess.Popen(
                cli("federated", "supernode", "--insecure", "--superlink", address, "--port", str(free_port()),
                    "--partition-id", str(index), "--num-partitions", "2"),
                cwd=folder, env=env, stdout=open(folder / f"supernode_{index}.log", "w"), stderr=subprocess.STDOUT,
                start_new_session=True))
        wait_for(lambda: log.read_text().count("Activated node_id") >= 2, 120, "SuperNodes registered")
        subprocess.run(cli("federated", "run", "-u", "settings_bench.py", "--superlink", address, "--rounds",
                           str(rounds), "--hparam", f"params={int(size)}"),
                       cwd=folder, env=env, check=True, capture_output=True, timeout=3600)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)


def simulation(folder, env, size, rounds):
    subprocess.run(cli("federated", "simulate", "-u", "settings_bench.py", "--num-clients", "2", "--rounds",
                       str(rounds), "--hparam", f"params={int(size)}"),
                   cwd=folder, env=env, check=True, capture_output=True, timeout=3600)


def round_breakdown(folder, size, rounds):
    """Per-round numbers of the one federation under folder/experiments."""
    (server,) = [path.parent for path in (folder / "experiments").glob("*/run.json")]
    run = json.loads((server / "run.json").read_text())
    assert run["status"] == "finished", run.get("error")
    # clients keep their last round in run.json (rounds are alike: same data, same model)
    clients = [json.loads((path / "run.json").read_text()) for path in sorted((server / "clients").iterdir())]
    last = [client["last_round"] for client in clients]
    timings = run["round_timings"]
    measured = timings[1:] or timings
    round_wall = statistics.mean(t["round_seconds"] for t in measured)
    server_seconds = statistics.mean(t["server_seconds"] for t in measured)
    fit = max(entry["fit_seconds"] for entry in last)
    setup = max(entry["message_seconds"] - entry["fit_seconds"] for entry in last)
    return {"round": round_wall, "fit": fit,
            "overhead": round_wall - fit, "client_setup": setup, "server": server_seconds,
            "flower": round_wall - fit - setup - server_seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="1e4,1e6,1e7")
    parser.add_argument("--modes", default="deployment,simulation")
    arguments = parser.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    print(f"{'mode':<11} {'params':>9} {'round s':>8} {'fit s':>7} {'overhead s':>10} "
          f"{'client setup':>12} {'server':>7} {'flower':>7}")
    for mode in arguments.modes.split(","):
        for size in (float(text) for text in arguments.sizes.split(",")):
            with tempfile.TemporaryDirectory(prefix="bench-federated-") as temporary:
                folder = Path(temporary)
                (folder / "settings_bench.py").write_text(SETTINGS)
                (folder / "model_bench.py").write_text(MODEL)
                env["FLWR_HOME"] = str(folder / "flwr_home")
                (deployment if mode == "deployment" else simulation)(folder, env, size, arguments.rounds)
                row = round_breakdown(folder, size, arguments.rounds)
            print(f"{mode:<11} {size:>9.0e} {row['round']:>8.2f} {row['fit']:>7.2f} {row['overhead']:>10.2f} "
                  f"{row['client_setup']:>12.2f} {row['server']:>7.2f} {row['flower']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
