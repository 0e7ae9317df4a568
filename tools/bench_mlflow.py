"""Benchmark: what logging a run to MLflow costs the training thread per epoch, with the server up and down.

A run tracked with `--mlflow` does three things per epoch: the training thread copies the epoch's logs and hands
them to the checkpoint's thread (`tracking.epoch_logger.MlflowEpochLogger.on_epoch_end`); that thread appends them to
the run's outbox, fsynced, once the checkpoint is durable; the bridge's thread sends them. This measures, in this
process, with the real outbox, bridge and sender against a real `mlflow server` (SQLite, 127.0.0.1) and against a
port where nothing listens, in rounds that alternate the two (>= 4): the training thread's wall and CPU time per
epoch (`on_epoch_end`, 12 metrics), the checkpoint thread's (the append), and how long the server took to have
every epoch (server up) or how many the outbox kept (server down). Without MLflow the training thread does none of
this: its cost is the number reported.

Target (issue 59): <= 5 ms an epoch on the training thread, server up or down.

Usage (from the repository root):

    .venv/bin/python tools/bench_mlflow.py [--rounds 4] [--epochs 200]
"""

import argparse
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TARGET_MS = 5.0
LOGS = {name: 0.123456 for name in ("loss", "mean_absolute_error", "val_loss", "val_mean_absolute_error",
                                    "val_loss_raw", "val_mean_absolute_error_raw", "learning_rate", "accuracy",
                                    "val_accuracy", "val_accuracy_raw", "precision", "recall")}


class CheckpointThread:
    """Runs what `when_durable` is given in a thread of its own, as `TrainingCheckpoint` does; times it."""

    def __init__(self) -> None:
        self.jobs: "queue.Queue" = queue.Queue()
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def when_durable(self, function) -> None:
        self.jobs.put(function)

    def _work(self) -> None:
        while True:
            function = self.jobs.get()
            if function is None:
                return
            started = time.perf_counter()
            function()
            self.seconds += time.perf_counter() - started

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(folder: Path) -> "tuple[subprocess.Popen, str]":
    port = free_port()
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "mlflow"), "server",
                               "--backend-store-uri", f"sqlite:///{folder}/mlflow.db", "--artifacts-destination",
                               str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return server, url
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the MLflow server did not answer within 120 s")


def one_round(folder: Path, uri: str, epochs: int) -> dict:
    """One tracked run of `epochs` epochs (no training: what tracking adds), timed."""
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.tracking.epoch_logger import MlflowEpochLogger
    from experiments_manager.tracking.session import TrackingSession

    folder.mkdir()
    experiment = Experiment(folder)
    experiment.write_run_info({"record_version": 2, "status": "running", "session_name": "bench",
                               "hparams": {"learningRate": 0.01}, "attempts": [{"number": 1}]})
    session = TrackingSession(experiment, uri)
    session.begin()
    checkpoint = CheckpointThread()
    logger = MlflowEpochLogger(session, checkpoint, folder / "history.csv")
    wall = cpu = 0.0
    for epoch in range(epochs):
        started, started_cpu = time.perf_counter(), time.thread_time()
        logger.on_epoch_end(epoch, dict(LOGS))
        wall += time.perf_counter() - started
        cpu += time.thread_time() - started_cpu
        time.sleep(0.002)  # the rest of an epoch
    checkpoint.close()
    started = time.monotonic()
    while session.outbox.pending() and time.monotonic() - started < 60 and session.bridge.down_since is None:
        time.sleep(0.01)
    caught_up = time.monotonic() - started
    kept = len(session.outbox.pending())
    session.bridge.close(seconds=2)
    return {"train_ms": 1000 * wall / epochs, "train_cpu_ms": 1000 * cpu / epochs,
            "append_ms": 1000 * checkpoint.seconds / epochs, "caught_up_s": caught_up, "kept": kept}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=200)
    arguments = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)  # the bridge's warning for the dead server, once per round
    with tempfile.TemporaryDirectory() as temporary:
        base = Path(temporary)
        server, live = start_server(base / "server")
        dead = f"http://127.0.0.1:{free_port()}"
        results: dict = {"server up": [], "server down": []}
        try:
            for index in range(arguments.rounds):
                order = [("server up", live), ("server down", dead)]
                for name, uri in order if index % 2 == 0 else reversed(order):
                    results[name].append(one_round(base / f"{name.replace(' ', '_')}_{index}", uri, arguments.epochs))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"{arguments.rounds} rounds x {arguments.epochs} epochs, 12 metrics an epoch (median of rounds; min-max)")
    for name, rounds in results.items():
        def spread(key: str) -> str:
            values = [result[key] for result in rounds]
            return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"

        print(f"{name:12s} training thread {spread('train_ms')} ms/epoch wall, {spread('train_cpu_ms')} ms CPU; "
              f"checkpoint thread (append, fsync) {spread('append_ms')} ms/epoch; "
              f"server had every epoch {spread('caught_up_s')} s after the last; kept in the outbox: "
              f"{[result['kept'] for result in rounds]}")
    worst = max(result["train_ms"] for rounds in results.values() for result in rounds)
    print(json.dumps({"worst_training_thread_ms_per_epoch": round(worst, 4), "target_ms": TARGET_MS,
                      "met": worst <= TARGET_MS}))


if __name__ == "__main__":
    main()
