"""Resume after kill -9 and after SIGTERM/SIGUSR1: the run finishes with the right epochs and state."""

import json
import os
import random
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import RAN_AS, hparams_statuses, read_run, settings_variant, wait_for

WORKING_FOLDER = "experiments/examples/curve_fitting"
NB_EPOCH = 5


def long_settings(workdir):
    return settings_variant(
        workdir, "long.py", ["nb_train_samples = 16000", "save_only_last_best_model = False", "early_stopping_patience = 50"]
    )


def the_experiment(workdir):
    found = list((workdir / WORKING_FOLDER).glob("*/run.json")) if (workdir / WORKING_FOLDER).is_dir() else []
    return found[0].parent if found else None


def checkpoints(root):
    return list((root / "checkpoints").glob("ckpt-*/state.json"))


class PartialVersionWatcher(threading.Thread):
    """Polls exported_models/ and records any version folder seen incomplete."""

    def __init__(self, export_dir):
        super().__init__(daemon=True)
        self.export_dir = Path(export_dir)
        self.partial = []
        self.seen = set()
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            if self.export_dir.is_dir():
                for path in list(self.export_dir.iterdir()):
                    if path.name.isdigit():
                        complete = (path / "saved_model.pb").is_file() and (path / "variables/variables.index").is_file()
                        if not complete and path.exists():
                            self.partial.append(path.name)
                        self.seen.add(int(path.name))
            self.stop.wait(0.005)


def half_written(root):
    """Temporary files and folders of this package's writers anywhere in the experiment."""
    return sorted(str(path.relative_to(root)) for path in Path(root).rglob(".*")
                  if path.name.startswith((".tmp-", ".deleting-")) or path.name.endswith(".tmp"))


def kill_when_seen(process, folder, prefix, timeout, suffix=""):
    """Kills `process` (SIGKILL) the moment a `prefix*suffix` entry of its own (its pid in the name) shows in
    `folder`: a write caught half done."""
    deadline = time.monotonic() + timeout
    own = re.compile(rf"[-.]{process.pid}([-.]|$)")
    while time.monotonic() < deadline and process.poll() is None:
        if folder.is_dir() and any(path.name.startswith(prefix) and path.name.endswith(suffix) and own.search(path.name)
                                   for path in folder.iterdir()):
            process.kill()
            process.wait(timeout=30)
            return
        time.sleep(0.0005)
    raise AssertionError(f"no {prefix}*{suffix} in {folder} within {timeout} s "
                         f"(the process {'ended' if process.poll() is not None else 'ran on'})")


class OutputReader(threading.Thread):
    """Collects a process' merged output lines as they come."""

    def __init__(self, process):
        super().__init__(daemon=True)
        self.process, self.lines = process, []
        self.start()

    def run(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self):
        self.join(timeout=30)
        return "\n".join(self.lines)


def assert_history_complete(root):
    history = np.genfromtxt(root / "history.csv", delimiter=",", names=True)
    assert list(history["epoch"].astype(int)) == list(range(1, NB_EPOCH + 1))
    return history


CHAIN_LINKS = 10
CHAIN_EPOCHS = 10
CHAIN_STEPS_PER_EPOCH = 8000 // 50


def kill_points(seed):
    """`CHAIN_LINKS` kill points drawn with `seed`: at least two during an export, two during a checkpoint and
    one during a file's atomic rewrite (training_curves.png: the one long enough, ~0.2 s, to be caught for sure;
    run.json and history.csv take microseconds), the others at a random moment of start-up or training."""
    rng = random.Random(seed)
    kinds = ["export", "export", "checkpoint", "checkpoint", "file"]
    kinds += [rng.choice(["export", "checkpoint", "file", "startup", "step", "step"])
              for _ in range(CHAIN_LINKS - len(kinds))]
    rng.shuffle(kinds)
    delays = {"startup": (0.0, 1.5), "step": (0.0, 2.0)}  # the others kill when their write shows (a forked start: ~1 s)
    return [(kind, round(rng.uniform(*delays[kind]), 3) if kind in delays else None) for kind in kinds]


@pytest.mark.slow
@pytest.mark.claim('`train --resume FOLDER` continues an experiment')
@pytest.mark.claim(
    "the checkpoint holds the optimizer's iteration count",
    note='(iterations == epochs × steps after resume)')
@pytest.mark.claim('the checkpoint holds the best-value state', note='(best_value == min of history after resume)')
@pytest.mark.claim('the checkpoint is written atomically after every epoch')
@pytest.mark.claim(
    'a run killed with `kill -9` at any point resumes; the epoch in progress is redone',
    note='(epochs 1..N once each in history.csv)')
@pytest.mark.claim(
    'a resumed run keeps numbering export versions after the last one',
    note='(versions written after the resume all above those before)')
@pytest.mark.claim(
    'a resume first removes what the killed run left half-written',
    note='(10 seeded kill points: ≥ 2 during an export, ≥ 2 during a checkpoint, ≥ 1 during a file rewrite; every '
         "dead writer's temporaries gone once the next run trains)")
def test_kill_9_at_ten_seeded_points_then_resume_finishes_with_nothing_half_written(workdir, start_cli, run_cli):
    """kill -9 at 10 seeded points (during an export, a checkpoint, a file rewrite, start-up, a training step),
    each followed by `train --resume`: every resume removes what the dead writer left, the last one finishes
    with every epoch and every optimizer step counted once, and no reader ever saw a partial version.
    Set KILL_CHAIN_SEED to replay a printed seed."""
    seed = int(os.environ.get("KILL_CHAIN_SEED") or random.SystemRandom().randrange(10**6))
    points = kill_points(seed)
    print(f"seed {seed}: kill points {points}")
    settings = settings_variant(workdir, "chain.py", [
        "nb_train_samples = 8000", "save_only_last_best_model = False", "early_stopping_patience = 50"])
    root, watcher, links = None, None, []
    for kind, delay in points:
        arguments = ("train", "--resume", str(root)) if root else (
            "train", "-u", str(settings), "--hparam", f"nbEpoch={CHAIN_EPOCHS}")
        process = start_cli(*arguments, warm=True)  # forked: no TensorFlow import per link
        output = OutputReader(process)
        if root is None:
            root = wait_for(lambda: the_experiment(workdir), 120, "the experiment folder")
            watcher = PartialVersionWatcher(root / "exported_models")
            watcher.start()
        if kind == "export":
            kill_when_seen(process, root / "exported_models", ".tmp-", 120)
        elif kind == "checkpoint":
            kill_when_seen(process, root / "checkpoints", ".tmp-ckpt-", 120)
        elif kind == "file":
            kill_when_seen(process, root, ".training_curves.png.", 120, suffix=".tmp")
        else:
            if kind == "step":
                wait_for(lambda: any(line.startswith("Epoch ") for line in output.lines) or process.poll() is not None,
                         120, "training to start")
            time.sleep(delay)  # deliberately a random moment, not a wait for a state
            assert process.poll() is None, f"{kind} kill: the run ended first\n" + output.text()
            process.kill()
            process.wait(timeout=30)
        left = half_written(root)
        print(f"{kind} kill of pid {process.pid}: left {left}")
        if kind != "startup" and kind != "step":
            assert left, f"the {kind} kill caught no write half done"
        assert read_run(root)["status"] == "running"  # killed: nothing could record it
        links.append((kind, process.pid, left, output.text()))

    result = run_cli("train", "--resume", str(root))
    watcher.stop.set()
    watcher.join()
    assert result.returncode == 0, result.stdout + result.stderr
    # each dead writer's temporaries were gone once the next run got to training (its resume removed them)
    outputs = [text for *_, text in links] + [result.stdout + result.stderr]
    for index, (kind, _, left, _) in enumerate(links):
        trained = [later for later in range(index + 1, len(links)) if "\nEpoch " in "\n" + outputs[later]]
        if left and trained:
            still_there = set(left) & set(links[trained[0]][2])
            assert not still_there, f"{still_there} (of the {kind} kill) survived the next resume"
    assert any("Removed what an interrupted run left half-written: " in text for text in outputs)
    assert half_written(root) == []
    info = read_run(root)
    assert info["status"] == "finished" and info["epochs_completed"] == CHAIN_EPOCHS
    history = np.genfromtxt(root / "history.csv", delimiter=",", names=True)
    assert list(history["epoch"].astype(int)) == list(range(1, CHAIN_EPOCHS + 1))
    assert info["best_value"] == pytest.approx(history["val_loss"].min())
    assert watcher.partial == []
    assert info["exported_versions"] == sorted(set(info["exported_versions"]))
    assert max(watcher.seen) == info["last_exported_version"]
    # the optimizer state (iteration count, EMA, slots) came back each time: every step counted once
    latest = sorted((root / "checkpoints").glob("ckpt-*"))[-1]
    with np.load(latest / "optimizer.npz") as optimizer:
        assert int(optimizer["v00000"]) == CHAIN_EPOCHS * CHAIN_STEPS_PER_EPOCH


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
@pytest.mark.claim(
    'SIGTERM / SIGUSR1 finish the step, checkpoint, mark `interrupted`, exit 128 + signal',
    note='(a checkpoint written after the signal)')
@pytest.mark.claim(
    'training_curves.png is drawn at the first epoch, then at most every 30 s, and at the end with every epoch',
    note='(a run stopped by SIGTERM/SIGUSR1 after 2 epochs: its PNG redrawn byte for byte from the whole history)')
@pytest.mark.claim('HParams: status from run.json (Success, Failure; Unknown while running or interrupted)')
@pytest.mark.claim('the run finishes its step, checkpoints and exits 138', note='(SIGUSR1 case)')
def test_stop_signal_checkpoints_marks_interrupted_then_resume_finishes(signum, workdir, start_cli, run_cli,
                                                                        tmp_path):
    process = start_cli("train", "-u", str(long_settings(workdir)), "--hparam", f"nbEpoch={NB_EPOCH}", warm=True)
    root = wait_for(lambda: the_experiment(workdir), 120, "the experiment folder")
    # two epochs done: the PNG was drawn after the first only (the next drawing waits 30 s), so the stopped run
    # must draw the second itself
    wait_for(lambda: len(checkpoints(root)) >= 2, 180, "the checkpoints of epochs 1 and 2")
    numbered_before = max(int(state.parent.name.removeprefix("ckpt-")) for state in checkpoints(root))
    process.send_signal(signum)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, output
    info = read_run(root)
    assert info["status"] == "interrupted"
    assert signal.Signals(signum).name in info["reason"]
    assert f"resume with:       {RAN_AS} train --resume {root.relative_to(workdir)}" in output
    newest = max(checkpoints(root), key=lambda state: int(state.parent.name.removeprefix("ckpt-")))
    assert int(newest.parent.name.removeprefix("ckpt-")) > numbered_before  # a checkpoint written on the signal,
    assert json.loads(newest.read_text())["epochs_completed"] == info["epochs_completed"]  # of what was trained
    assert hparams_statuses(root / "logs") == []  # interrupted (resumable): TensorBoard reads "Unknown"
    assert_png_shows_every_epoch(root, tmp_path)

    result = run_cli("train", "--resume", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    info = read_run(root)
    assert info["status"] == "finished" and info["epochs_completed"] == NB_EPOCH
    assert_history_complete(root)
    assert hparams_statuses(root / "logs") == ["STATUS_SUCCESS"]


def assert_png_shows_every_epoch(root, tmp_path):
    """training_curves.png is what `plot_history` draws from the whole history.csv and run.json's best epoch."""
    from experiments_manager.callbacks.training_curves import plot_history

    info = read_run(root)
    plot_history(root / "history.csv", tmp_path / "redrawn.png", title=root.name,
                 best=(info["monitored_loss_name"], info["best_epoch"], info["best_value"]))
    assert (tmp_path / "redrawn.png").read_bytes() == (root / "training_curves.png").read_bytes(), \
        f"training_curves.png does not show the {info['epochs_completed']} epochs of history.csv"


@pytest.mark.slow
def test_resuming_a_finished_run_changes_nothing(workdir, run_cli):
    assert run_cli("train", "-u", "examples/regression/mysettings_curve_fitting.py", "--hparam", "nbEpoch=1").returncode == 0
    root = the_experiment(workdir)
    before = read_run(root)
    result = run_cli("train", "--resume", str(root))
    assert result.returncode == 0
    assert "status:            finished" in result.stdout
    assert read_run(root) == before


@pytest.mark.slow
@pytest.mark.claim(
    'a single Ctrl-C does the same (exit 130)',
    note='(weak: sends SIGINT until it stops; the graceful first-Ctrl-C path is not asserted alone)')
@pytest.mark.claim('a second Ctrl-C stops at once: `interrupted`, exit 130')
@pytest.mark.claim(
    '`addon_callbacks` are added to training',
    note='(its callback runs at the epoch end; list form only)')
def test_a_second_ctrl_c_stops_at_once_and_is_recorded_as_interrupted(workdir, start_cli):
    """The first Ctrl-C waits for the step boundary; while a long epoch-end callback holds it, a second one
    stops at once. That is the user's interruption, not a failure."""
    settings = settings_variant(workdir, "slow_epoch_end.py", [
        "import pathlib, time",
        "class _SlowEpochEnd(tf.keras.callbacks.Callback):",
        "    def on_epoch_end(self, epoch, logs=None):",
        "        pathlib.Path('epoch_end_reached').touch()",
        "        time.sleep(120)",
        "def addon_callbacks(model, train_samples, val_samples):",
        "    return [_SlowEpochEnd()]",
    ])
    process = start_cli("train", "-u", str(settings), "--hparam", "nbEpoch=3", "--hparam", "nb_train_samples=200",
                        warm=True)
    wait_for(lambda: (workdir / "epoch_end_reached").exists() or process.poll() is not None, 120, "the epoch end")
    assert process.poll() is None, process.stdout.read()

    def interrupted():
        if read_run(the_experiment(workdir))["status"] != "running":
            return True
        process.send_signal(signal.SIGINT)  # again until it stops: the first waits, the next stops at once
        return False

    wait_for(interrupted, 60, "the run to stop on Ctrl-C", interval=0.5)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    info = read_run(the_experiment(workdir))
    assert info["status"] == "interrupted" and "Ctrl-C (SIGINT) stopped it at once" in info["reason"], info
    assert f"resume with: {RAN_AS} train --resume" in output and "Traceback" not in output
