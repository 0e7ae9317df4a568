"""Multi-worker claims of the docs (docs/how-to/multi-worker.md), with real `train --workers 2` runs over loopback
and a probe settings file whose model writes, per worker, the sample ids of every step it trains on."""

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path


import pytest

from conftest import cli_command, cli_env, read_run, settings_variant, wait_for
from test_multiworker import resumed_with_worker_logs

PROBE_MODEL = '''
import keras
import numpy as np
import tensorflow as tf


class RecordIds(keras.layers.Layer):
    """Passes x through; in training, appends the step's sample ids to the worker's file (one line per step)."""

    def __init__(self, path, **kwargs):
        super().__init__(**kwargs)
        self.ids_path = path

    def _write(self, ids):
        with open(self.ids_path, "a") as handle:
            handle.write(" ".join(str(int(i)) for i in ids.numpy()) + "\\n")
        return np.int64(0)

    def call(self, inputs, training=None):
        x, ids = inputs
        if training:
            tf.py_function(self._write, [ids], tf.int64)
        return x


def model(usersettings):
    x = keras.Input(shape=(1,), name="x")
    ids = keras.Input(shape=(), dtype="int64", name="sample_id")
    h = RecordIds(f"{usersettings.probe_dir}/steps_{usersettings.task}.txt")([x, ids])
    h = keras.layers.Dense(8, activation="relu")(h)
    return keras.Model({"x": x, "sample_id": ids}, keras.layers.Dense(1, name="prediction")(h), name="probe")
'''

PROBE_SETTINGS = '''
"""Multi-worker probe: samples carry ids; each worker records its seed, its steps' ids and its epochs."""
import json
import os
import random

import keras
import numpy as np
import tensorflow as tf

workingFolder = "experiments/probe"
session_name = "probe"
hparams = {{"nbEpoch": 2, "source": "tensors", "fail_at_step": -1}}
nbEpoch = hparams["nbEpoch"]
model_file = "probe_model.py"
probe_dir = {probe_dir!r}
data_files = {data_files!r}
random_seed = None  # drawn by each worker: the run must use the chief's
batch_size = 20
nb_train_samples = 200
nb_val_samples = 40
early_stopping_patience = 10
task = json.loads(os.environ.get("TF_CONFIG") or "{{}}").get("task", {{}}).get("index", 0)


def sample(ids):
    x = ((ids % 97) / 24.0 - 2.0).astype(np.float32).reshape(-1, 1)
    return {{"sample_id": ids, "x": x}}, x ** 2


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    if not isTraining:
        return tf.data.Dataset.from_tensor_slices(sample(np.arange(10**6, 10**6 + nb_val_samples))).batch(batch_size)
    with open(f"{{probe_dir}}/seed_{{task}}.txt", "w") as handle:  # the first draw after the run seeded Python
        handle.write(str(random.getrandbits(64)))
    if hparams["source"] == "files":  # text files, one sample id per line
        ids = tf.data.TextLineDataset(data_files).map(lambda line: tf.strings.to_number(line, tf.int64))
        return ids.map(sample_tf).batch(batch_size).repeat()
    return tf.data.Dataset.from_tensor_slices(sample(np.arange(nb_train_samples, dtype=np.int64))).batch(batch_size)


def sample_tf(i):
    x = tf.reshape(tf.cast(i % 97, tf.float32) / 24.0 - 2.0, [1])
    return {{"sample_id": i, "x": x}}, x ** 2


class Probe(keras.callbacks.Callback):
    """Writes `epoch step` after each step of this worker; raises at step `fail_at_step` on worker 1."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        with open(f"{{probe_dir}}/progress_{{task}}.txt", "a") as handle:
            handle.write(f"{{self.epoch}} {{batch}}\\n")
        if task == 1 and self.epoch * 10 + batch == hparams["fail_at_step"]:
            raise ValueError("worker 1 broke on purpose")


def addon_callbacks(model, train_samples, val_samples):
    return [Probe()]


def get_learningRate():
    return 0.01


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)


def get_total_loss(model):
    return "mean_squared_error"


def get_metrics(model, loss):
    return []


def get_served_module(model, model_name):
    class Served(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def served_model(self, x):
            ids = tf.zeros(tf.shape(x)[:1], tf.int64)
            return {{"prediction": self.model({{"x": x, "sample_id": ids}}, training=False)}}
    return Served()
'''


def write_probe(workdir, data_files=()):
    """The probe settings and model in `workdir`; returns (settings file name, probe folder)."""
    probe_dir = workdir / "probe"
    probe_dir.mkdir(exist_ok=True)
    (workdir / "probe_model.py").write_text(PROBE_MODEL)
    (workdir / "probe_settings.py").write_text(PROBE_SETTINGS.format(probe_dir=str(probe_dir),
                                                                      data_files=[str(f) for f in data_files]))
    return "probe_settings.py", probe_dir


def steps_of(probe_dir, task):
    path = probe_dir / f"steps_{task}.txt"
    text = path.read_text() if path.exists() else ""
    return [[int(word) for word in line.split()] for line in text[:text.rfind("\n") + 1].splitlines()]


def progress_of(probe_dir, task):
    path = probe_dir / f"progress_{task}.txt"
    text = path.read_text() if path.exists() else ""
    return [tuple(int(word) for word in line.split()) for line in text[:text.rfind("\n") + 1].splitlines()]


def experiments_in(workdir):
    return sorted(path.parent for path in (workdir / "experiments" / "probe").glob("*/run.json"))


def worker_pids(launcher_pid):
    """The pids of the `--workers` launcher's worker processes (its children), from /proc."""
    children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children")
    try:
        return [int(pid) for pid in children.read_text().split()]
    except OSError:
        return []


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except OSError:
        return False


def task_pids(launcher_pid):
    """{task index: pid} of the `--workers` launcher's workers, read from their TF_CONFIG."""
    pids = {}
    for pid in worker_pids(launcher_pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"TF_CONFIG="):
                pids[json.loads(entry[len(b"TF_CONFIG="):])["task"]["index"]] = pid
    return pids


def start_launcher(workdir, *arguments):
    """`experiments-manager ARGS` in the background, its output (the chief's and the launcher's) to launcher.log."""
    with open(workdir / "launcher.log", "a") as log:
        return subprocess.Popen(cli_command(*arguments), cwd=workdir, env=cli_env(), stdout=log,
                                stderr=subprocess.STDOUT)


def by_epoch(steps, epoch, steps_per_epoch=10):
    return steps[epoch * steps_per_epoch:(epoch + 1) * steps_per_epoch]


@pytest.mark.slow
@pytest.mark.claim(
    '`batch_size` is the global batch',
    note='(each worker trains 10 samples of every global batch of 20)')
@pytest.mark.claim('the dataset is sharded by file, else by element')
@pytest.mark.claim("all workers use the chief's seed")
@pytest.mark.claim(
    'a stop signal to any worker stops all of them after the same step',
    note='(the signal to worker 1 only; the chief stops for that signal)')
def test_a_stop_signal_to_one_worker_stops_all_after_the_same_step_then_the_run_resumes(workdir, run_cli):
    """Also: every worker uses the chief's seed, each computes batch_size / N of every global batch, and a
    dataset of tensors is sharded by element."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    signum = rng.choice([signal.SIGUSR1, signal.SIGTERM])
    after_steps = rng.randint(1, 5)  # steps of the second epoch worker 1 has trained when it gets the signal
    print(f"seed {seed}: {signum.name} to worker 1 only, after {after_steps} steps of epoch 2")
    settings, probe = write_probe(workdir)
    launcher = start_launcher(workdir, "train", "-u", settings, "--workers", "2", "--hparam", "nbEpoch=3")
    try:
        pids = wait_for(lambda: len(task_pids(launcher.pid)) == 2 and task_pids(launcher.pid), 60, "two workers")
        wait_for(lambda: sum(epoch == 1 for epoch, _ in progress_of(probe, 1)) >= after_steps or
                 launcher.poll() is not None, 240, "worker 1 in its second epoch")
        assert launcher.poll() is None, (workdir / "launcher.log").read_text()
        os.kill(pids[1], signum)  # the worker only: neither the launcher nor the chief
        code = launcher.wait(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    output = (workdir / "launcher.log").read_text()
    assert code == 128 + signum, output  # the chief stops on the workers' agreement, for the signal worker 1 got
    assert not any(alive(pid) for pid in pids.values())
    (root,) = experiments_in(workdir)
    stopped = read_run(root)
    assert stopped["status"] == "interrupted" and stopped["reason"] == f"received {signum.name}", stopped
    # the second epoch cut (or, had the signal come after its last agreement, the third one not begun)
    assert stopped["epochs_completed"] in (1, 2), stopped
    # after the same step: both workers recorded the same steps, up to the same one, in the second epoch
    progress = {task: progress_of(probe, task) for task in (0, 1)}
    assert progress[0] == progress[1], progress
    assert progress[0][-1][0] == 1 and progress[0][-1][1] >= after_steps - 1, progress[0][-1]

    # the chief's seed (drawn, as the settings set none) on every worker
    draws = {task: int((probe / f"seed_{task}.txt").read_text()) for task in (0, 1)}
    assert draws[0] == draws[1] == random.Random(stopped["seed"]).getrandbits(64), (draws, stopped["seed"])
    # batch_size (20) is the global batch: each worker computes 10 samples of every global batch of the pipeline
    # (unshuffled: ids 20k..20k+19 at step k), the tensors split between the workers by element
    steps = {task: steps_of(probe, task) for task in (0, 1)}
    for k, (mine, theirs) in enumerate(zip(by_epoch(steps[0], 0), by_epoch(steps[1], 0))):
        assert len(mine) == len(theirs) == 10, (k, mine, theirs)
        assert sorted(mine + theirs) == list(range(20 * k, 20 * k + 20)), (k, mine, theirs)
    assert len(by_epoch(steps[0], 0)) == 10

    for task in (0, 1):
        (probe / f"progress_{task}.txt").write_text("")
    resumed = resumed_with_worker_logs(workdir, workdir / "tmp", "train", "--resume", str(root), "--workers", "2",
                                       timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    finished = read_run(root)
    assert finished["status"] == "finished" and finished["epochs_completed"] == 3
    assert finished["seed"] == stopped["seed"]
    # every worker resumed from the chief's checkpoint: both start at the epoch after it, and go on to epoch 3
    expected = [(epoch, batch) for epoch in range(stopped["epochs_completed"], 3) for batch in range(10)]
    assert progress_of(probe, 0) == progress_of(probe, 1) == expected
    draws = {task: int((probe / f"seed_{task}.txt").read_text()) for task in (0, 1)}
    assert draws[0] == draws[1] == random.Random(stopped["seed"]).getrandbits(64)


@pytest.mark.slow
@pytest.mark.claim('the dataset is sharded by file, else by element')
@pytest.mark.claim('a failing worker stops the others')
def test_files_are_sharded_by_file_and_a_failing_worker_stops_the_others(workdir):
    files = []
    for index in range(4):  # 4 files of 50 sample ids: file k holds k*1000 .. k*1000+49
        path = workdir / f"samples_{index}.txt"
        path.write_text("".join(f"{index * 1000 + i}\n" for i in range(50)))
        files.append(path)
    ids_of = {index: set(range(index * 1000, index * 1000 + 50)) for index in range(4)}
    settings, probe = write_probe(workdir, files)
    launcher = start_launcher(workdir, "train", "-u", settings, "--workers", "2", "--hparam", "source=files",
                              "--hparam", "fail_at_step=13")  # worker 1 raises at its 4th step of epoch 2
    try:
        pids = wait_for(lambda: len(task_pids(launcher.pid)) == 2 and task_pids(launcher.pid), 60, "two workers")
        wait_for(lambda: not alive(pids[1]), 300, "worker 1 to fail")
        wait_for(lambda: launcher.poll() is not None, 60, "the run to end after worker 1 failed")
        code = launcher.returncode
    finally:
        if launcher.poll() is None:
            launcher.kill()
    output = (workdir / "launcher.log").read_text()
    assert code != 0, output
    assert not alive(pids[0])
    # the failure is told in one line, with the line of the worker's error
    assert "worker 1 exited with 2; the end of its log:" in output, output
    assert "probe_settings.py: on_train_batch_end (line " in output
    assert "raised ValueError: worker 1 broke on purpose" in output
    (root,) = experiments_in(workdir)
    info = read_run(root)
    assert info["status"] == "failed" and info["epochs_completed"] == 1, {k: info.get(k) for k in ("status", "error")}

    # epoch 1, read from the files: worker 0 read files 0 and 2 only, worker 1 files 1 and 3, 10 samples a step each
    steps = {task: by_epoch(steps_of(probe, task), 0) for task in (0, 1)}
    seen = {task: {i for step in steps[task] for i in step} for task in (0, 1)}
    assert all(len(step) == 10 for task in (0, 1) for step in steps[task]), steps
    assert seen[0] == ids_of[0] | ids_of[2], sorted(seen[0])
    assert seen[1] == ids_of[1] | ids_of[3], sorted(seen[1])


@pytest.mark.slow
@pytest.mark.claim('not combined with Kafka input or federated learning')
def test_kafka_input_with_several_workers_is_one_error_line_and_creates_nothing(workdir, run_cli):
    # worker 1 on a slow node: still loading its settings when the chief refuses them, the launcher stops it
    settings = settings_variant(workdir, "kafka_workers.py", [
        "if json.loads(os.environ['TF_CONFIG'])['task']['index'] == 1:", "    time.sleep(600)",
    ], base="examples/kafka/mysettings_kafka_curve_fitting.py")
    (workdir / settings).write_text("import json, os, time\n" + (workdir / settings).read_text())
    started = time.monotonic()
    result = run_cli("train", "-u", str(settings), "--workers", "2")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert time.monotonic() - started < 120, "the launcher waited for the slow worker"
    errors = [line for line in output.splitlines() if "error:" in line]
    assert errors == ["error: kafka_workers.py: consume_data_from_kafka: not supported with multi-worker training "
                      "(TF_CONFIG names 2 workers); set it to False"], output
    assert "Traceback" not in output and "worker 1 exited" not in output, output  # stopped by the launcher: no news
    assert not (workdir / "experiments").exists()


@pytest.mark.slow
@pytest.mark.claim('not combined with Kafka input or federated learning')
def test_federated_settings_in_a_cluster_is_one_error_line_and_creates_nothing(workdir):
    workers = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}  # never contacted: refused before any connection
    env = dict(cli_env(), TF_CONFIG=json.dumps({"cluster": workers, "task": {"type": "worker", "index": 0}}))
    process = subprocess.Popen(cli_command("train", "-u", "examples/federated/mysettings_federated_curve_fitting.py"),
                               cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        wait_for(lambda: process.poll() is not None or list(workdir.glob("experiments/**/run.json")), 120,
                 "the command to end or create an experiment")
    finally:
        if process.poll() is None:  # it went ahead: stopped before it starts its simulation engine
            os.killpg(process.pid, signal.SIGKILL)
        output = process.communicate(timeout=30)[0]
    assert not (workdir / "experiments").exists(), output
    assert process.returncode == 2, output
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1 and "enable_federated_learning" in errors[0] and "multi-worker" in errors[0], output
