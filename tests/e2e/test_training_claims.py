"""Training claims of the docs (once the README's): early stopping and LR-on-plateau (their state across a resume,
the halving, the direction, the absence under a schedule), TensorBoard's learning-rate scalars, weight histograms
and `custom` run, epochs counted from 1 on the console and in the PNG, the console on a pipe and on a terminal, and
Keras 2 settings with `flow_from_directory(...)` and `optimizers.experimental.AdamW(...)`.

The early-stopping and LR-on-plateau runs monitor a value training cannot change, the mean of the validation
labels (`val_label_mean`): the first epoch sets the best and every later one is a plateau, so the epochs where
the callbacks act are known in advance, whatever the weights do, and an uninterrupted run and an interrupted,
resumed one must agree exactly.
"""

import contextlib
import csv
import io
import json
import os
import pty
import re
import shutil
import subprocess
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, cli_command, cli_env, read_run, run_command, settings_variant

pytestmark = pytest.mark.slow  # its module fixtures train several runs (make test-fast leaves it out)

RATE = 0.01  # the regression example's hparams['learningRate']
PATIENCE = 4  # early_stopping_patience: LR-on-plateau halves after 4 // 2 = 2 epochs without improvement
CONSTANT_MONITOR = [
    "nb_train_samples = 200",
    "nb_val_samples = 100",
    "def label_mean(y_true, y_pred):",
    "    return tf.reduce_mean(y_true)",
    "def get_metrics(model, loss):",
    "    return [label_mean]",
    "monitored_loss_name = 'val_label_mean'",
    "monitored_loss_mode = 'min'",
    f"early_stopping_patience = {PATIENCE}",
]
SIGUSR1_AFTER_EPOCH_4 = [
    "import os, signal",
    "class _PreemptedAfterEpoch4(tf.keras.callbacks.Callback):",
    "    def on_epoch_end(self, epoch, logs=None):",
    "        if epoch == 3:  # Keras' epoch 3 is the console's epoch 4",
    "            os.kill(os.getpid(), signal.SIGUSR1)  # what Slurm sends before preemption",
    "def addon_callbacks(model, train_samples, val_samples):",
    "    return [_PreemptedAfterEpoch4()]",
]


def _workdir(tmp_path_factory, name):
    workdir = tmp_path_factory.mktemp(name)
    shutil.copytree(REPO / "examples", workdir / "examples")
    return workdir


def _train_in(workdir, run):
    """Runs `run()` (a training call) in `workdir`; returns (its outcome, what it printed on stdout)."""
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.chdir(workdir)
        outcome = run()
    return outcome, printed.getvalue()


def _history(root):
    """history.csv's columns as floats; a blank cell (an epoch the raw weights were not validated at) is NaN."""
    with open(Path(root) / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {name: [float(row[name] or "nan") for row in rows] for name in rows[0]}


def _latest_state(root):
    latest = sorted((Path(root) / "checkpoints").glob("ckpt-*"))[-1]
    return json.loads((latest / "state.json").read_text())


def _events(run_dir):
    """Every summary of a TensorBoard run folder: {tag: {step: numpy value}} and {tag: plugin name}."""
    import tensorflow as tf

    values, plugins = {}, {}
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                values.setdefault(value.tag, {})[event.step] = tf.make_ndarray(value.tensor)
                if value.metadata.plugin_data.plugin_name:
                    plugins[value.tag] = value.metadata.plugin_data.plugin_name
    return values, plugins


def _scalars(run_dir, tag):
    values, _ = _events(run_dir)
    return {step: float(value) for step, value in sorted(values.get(tag, {}).items())}


def _histogram_tags(run_dir):
    _, plugins = _events(run_dir)
    return sorted(tag for tag, plugin in plugins.items() if plugin == "histograms")


# ---------------------------------------------------------------------------------------------------------------
# Early stopping and LR-on-plateau: one run straight through, one preempted by SIGUSR1 after epoch 4 and resumed


@pytest.fixture(scope="module")
def plateau(tmp_path_factory):
    """The same settings trained straight through, and stopped by SIGUSR1 after epoch 4 then resumed.

    Expected from Keras' rules: epoch 1 sets the best; early stopping (patience 4) stops after epoch 5;
    LR-on-plateau (patience 2) halves the rate at the ends of epochs 3 and 5.
    """
    from experiments_manager import training

    workdir = _workdir(tmp_path_factory, "plateau")
    straight = settings_variant(workdir, "plateau.py", CONSTANT_MONITOR + ["histogram_freq = 3"])
    preempted = settings_variant(workdir, "plateau_preempted.py",
                                 CONSTANT_MONITOR + ["histogram_freq = 3"] + SIGUSR1_AFTER_EPOCH_4)
    whole, whole_console = _train_in(workdir, lambda: training.train(str(straight), {"nbEpoch": 12}, command=["t"]))
    assert whole.status == "finished", whole.reason
    stopped, _ = _train_in(workdir, lambda: training.train(str(preempted), {"nbEpoch": 12}, command=["t"]))
    root = workdir / stopped.experiment.root
    state_at_stop = _latest_state(root)
    info_at_stop = read_run(root)
    resumed, resumed_console = _train_in(workdir, lambda: training.resume(root, command=["t", "--resume"]))
    assert resumed.status == "finished", resumed.reason
    return types.SimpleNamespace(
        whole=whole, whole_root=workdir / whole.experiment.root, whole_console=whole_console,
        stopped=stopped, state_at_stop=state_at_stop, info_at_stop=info_at_stop,
        resumed=resumed, resumed_root=root, resumed_console=resumed_console)


@pytest.mark.claim('the checkpoint holds the early-stopping state (patience survives a resume)')
@pytest.mark.claim(
    'the checkpoint holds the LR-on-plateau state',
    note='(wait/best in state.json; same rates and final rate after the resume)')
def test_early_stopping_stops_at_the_same_epoch_after_a_sigusr1_and_a_resume(plateau):
    whole = read_run(plateau.whole_root)
    assert whole["stopped_early"] is True and whole["epochs_completed"] == 5, whole
    assert _history(plateau.whole_root)["epoch"] == [1, 2, 3, 4, 5]
    assert "Epoch 5: early stopping" in plateau.whole_console

    # SIGUSR1 after epoch 4: checkpointed, interrupted, exit 128 + 10
    assert (plateau.stopped.status, plateau.stopped.exit_code) == ("interrupted", 138), plateau.stopped.reason
    assert "SIGUSR1" in plateau.stopped.reason
    assert plateau.info_at_stop["status"] == "interrupted" and plateau.info_at_stop["epochs_completed"] == 4
    state = plateau.state_at_stop
    best = _history(plateau.resumed_root)["val_label_mean"][0]
    print("checkpoint state after epoch 4:", json.dumps(state))
    assert state["epochs_completed"] == 4
    early = state["callbacks"]["early_stopping"]  # epochs 2, 3, 4 without improvement on epoch 1's best
    assert early["wait"] == 3 and early["best"] == pytest.approx(best, rel=1e-6), early
    plateau_state = state["callbacks"]["reduce_lr"]  # halved after epoch 3 (wait back to 0), epoch 4: 1
    assert plateau_state["wait"] == 1 and plateau_state["best"] == pytest.approx(best, rel=1e-6), plateau_state

    # resumed: one more epoch, then the stop the uninterrupted run made (a reset patience would run to epoch 9)
    resumed = read_run(plateau.resumed_root)
    assert resumed["stopped_early"] is True and resumed["epochs_completed"] == 5, resumed
    assert _history(plateau.resumed_root)["epoch"] == [1, 2, 3, 4, 5]
    assert "Epoch 5/12" in plateau.resumed_console and "Epoch 5: early stopping" in plateau.resumed_console
    assert "Epoch 6/12" not in plateau.resumed_console
    # and LR-on-plateau went on from its counter: the same rates, the same final rate in the optimizer
    assert _history(plateau.resumed_root)["learning_rate"] == _history(plateau.whole_root)["learning_rate"]
    assert float(plateau.resumed.trained_model.optimizer.learning_rate) == pytest.approx(RATE / 4, rel=1e-6)


@pytest.mark.claim('Scalars: `epoch_learning_rate` of a schedule or LR-on-plateau')
@pytest.mark.claim('LR-on-plateau halves the rate after `early_stopping_patience // 2` epochs')
def test_lr_on_plateau_halves_the_rate_after_half_the_patience(plateau):
    expected = [RATE, RATE, RATE, RATE / 2, RATE / 2]  # the rate each epoch trained at
    assert _history(plateau.whole_root)["learning_rate"] == pytest.approx(expected, rel=1e-6)
    assert float(plateau.whole.trained_model.optimizer.learning_rate) == pytest.approx(RATE / 4, rel=1e-6)  # after epoch 5
    # TensorBoard's epoch_learning_rate (train run) shows the same, at steps counted from 1
    shown = _scalars(plateau.whole_root / "logs/train", "epoch_learning_rate")
    assert list(shown) == [1, 2, 3, 4, 5] and list(shown.values()) == pytest.approx(expected, rel=1e-6)
    assert re.findall(r"Epoch (\d+): ReduceLROnPlateau reducing learning rate", plateau.whole_console) == ["3", "5"]


@pytest.mark.claim('a run stopped early: histograms of its final weights')
def test_a_run_stopped_early_gets_histograms_of_its_final_weights(plateau):
    """histogram_freq = 3: epochs 1 and 4; the run stopped after epoch 5, whose final weights are written too."""
    values, plugins = _events(plateau.whole_root / "logs/train")
    final = {weight.path: np.asarray(weight.value) for weight in plateau.whole.trained_model.weights}
    tags = [tag for tag, plugin in plugins.items() if plugin == "histograms"]
    assert set(tags) == set(final), (tags, list(final))
    for tag in tags:
        assert sorted(values[tag]) == [1, 4, 5], tag
        buckets = values[tag][5]  # (left edge, right edge, count) rows
        weight = final[tag]
        assert buckets[:, 2].sum() == weight.size
        assert (buckets[0, 0], buckets[-1, 1]) == pytest.approx((weight.min(), weight.max()), abs=1e-6), tag


# ---------------------------------------------------------------------------------------------------------------
# A learning-rate schedule, no histograms, custom summaries: one 3-epoch run

SCHEDULE_STEPS = 4  # 200 samples / batch 50: the schedule halves the rate every epoch


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory):
    from experiments_manager import training

    workdir = _workdir(tmp_path_factory, "scheduled")
    settings = settings_variant(workdir, "scheduled.py", CONSTANT_MONITOR + [
        "histogram_freq = 0",
        "def get_learningRate():",
        f"    return tf.keras.optimizers.schedules.ExponentialDecay({RATE}, {SCHEDULE_STEPS}, 0.5, staircase=True)",
        "def custom_tensorboard_logs(model, epoch, logs):",
        "    tf.summary.scalar('val_loss_doubled', logs['val_loss'] * 2, step=epoch + 1)",
    ])
    outcome, console = _train_in(workdir, lambda: training.train(str(settings), {"nbEpoch": 3}, command=["t"]))
    assert outcome.status == "finished", outcome.reason
    return types.SimpleNamespace(outcome=outcome, root=workdir / outcome.experiment.root, console=console)


@pytest.mark.claim('Scalars: `epoch_learning_rate` of a schedule or LR-on-plateau')
@pytest.mark.claim(
    'LR-on-plateau is added only when the learning rate is a number, not a schedule',
    note='(a run whose plateau would need it)')
def test_a_schedule_owns_the_learning_rate_and_tensorboard_shows_it(scheduled):
    """The monitored value plateaus from epoch 2: an LR-on-plateau (patience 2) would set the rate after epoch 3,
    which Keras refuses for a schedule (the run would fail). None is added, and its state is not checkpointed."""
    assert "reduce_lr" not in _latest_state(scheduled.root)["callbacks"]
    assert "ReduceLROnPlateau" not in scheduled.console
    # the schedule's rate at the optimizer's iteration count after each epoch (epoch n: 4n steps), as Keras'
    # TensorBoard callback logs it: for a schedule, the rate of the next step, not the one epoch n started with
    expected = [RATE * 0.5 ** epoch for epoch in (1, 2, 3)]
    assert _history(scheduled.root)["learning_rate"] == pytest.approx(expected, rel=1e-6)
    shown = _scalars(scheduled.root / "logs/train", "epoch_learning_rate")
    assert list(shown) == [1, 2, 3] and list(shown.values()) == pytest.approx(expected, rel=1e-6)


@pytest.mark.claim('`histogram_freq = 0` turns them off')
def test_histogram_freq_0_writes_no_histograms(scheduled):
    values, _ = _events(scheduled.root / "logs/train")
    assert "epoch_loss" in values  # the run folder is written
    assert _histogram_tags(scheduled.root / "logs/train") == []
    assert not any(_histogram_tags(folder) for folder in (scheduled.root / "logs").iterdir() if folder.is_dir())


@pytest.mark.claim('`custom_tensorboard_logs` summaries land in the `custom` run')
def test_custom_tensorboard_logs_land_in_the_custom_run(scheduled):
    val_loss = _history(scheduled.root)["val_loss"]
    shown = _scalars(scheduled.root / "logs/custom", "val_loss_doubled")
    assert shown == pytest.approx({epoch: 2 * value for epoch, value in enumerate(val_loss, 1)}, rel=1e-6)
    for folder in (scheduled.root / "logs").iterdir():  # in that run only
        if folder.is_dir() and folder.name != "custom":
            assert "val_loss_doubled" not in _events(folder)[0], folder.name


@pytest.mark.claim('epochs counted from 1 in the console ("Epoch 3/10") and the PNG\'s x axis')
def test_the_png_plots_epochs_counted_from_1(scheduled, tmp_path):
    """The run's training_curves.png is redrawn byte for byte from history.csv and run.json's best epoch by
    the engine's `plot_history`; the figure of that drawing is then read: every panel's x values, its x tick
    labels and its best-epoch marker. (`plot_history` keeps no reference to its figure: with the garbage
    collector paused, the figure is still in memory after the call.)"""
    import gc

    from matplotlib.figure import Figure

    from experiments_manager.callbacks.training_curves import plot_history

    info = read_run(scheduled.root)
    best = (info["monitored_loss_name"], info["best_epoch"], info["best_value"])
    redrawn = tmp_path / "redrawn.png"
    gc.collect()
    gc.disable()
    try:
        before = {id(item) for item in gc.get_objects() if isinstance(item, Figure)}
        plot_history(scheduled.root / "history.csv", redrawn, title=scheduled.root.name, best=best)
        (figure,) = [item for item in gc.get_objects() if isinstance(item, Figure) and id(item) not in before]
    finally:
        gc.enable()
    assert redrawn.read_bytes() == (scheduled.root / "training_curves.png").read_bytes()
    assert _history(scheduled.root)["epoch"] == [1, 2, 3] and info["best_epoch"] == 1
    assert len(figure.axes) >= 3  # loss, label_mean, learning rate
    for axes in figure.axes:
        low, high = axes.get_xlim()
        assert axes.get_xlabel() == "epoch"
        plotted = [list(line.get_xdata()) for line in axes.get_lines()]
        curves = [xs for xs in plotted if len(xs) == 3]
        assert curves and all(xs == [1, 2, 3] for xs in curves), (axes.get_title(), plotted)
        assert [1, 1] in plotted, (axes.get_title(), plotted)  # the best epoch's vertical line, at epoch 1
        shown = [(tick, label.get_text()) for tick, label in zip(axes.get_xticks(), axes.get_xticklabels())
                 if low <= tick <= high]
        assert shown == [(1, "1"), (2, "2"), (3, "3")], (axes.get_title(), shown)


# ---------------------------------------------------------------------------------------------------------------
# The console: a pipe (one line per epoch) and a terminal (a progress bar), through the command line

R2_LINES = [  # R2 under a name no rule knows: only the metric object says that higher is better
    "nb_train_samples = 400",
    "nb_val_samples = 100",
    "monitored_loss_name = 'val_fit_quality'",
    "early_stopping_patience = 2",  # LR-on-plateau: patience 1, so any epoch without a higher R2 halves the rate
    "def get_metrics(model, loss):",
    "    return [tf.keras.metrics.R2Score(name='fit_quality')]",
]
PROGRESS_LINE = re.compile(r"^\d+/\d+ - \d+s - .*loss: ")


@pytest.fixture(scope="module")
def piped(tmp_path_factory):
    """`train` with stdout and stderr pipes (a batch job), monitoring an R2 score."""
    workdir = _workdir(tmp_path_factory, "piped")
    settings = settings_variant(workdir, "r2.py", R2_LINES)
    result = run_command(["train", "-u", str(settings), "--hparam", "nbEpoch=4"], cwd=workdir,
                         env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (root,) = [path.parent for path in (workdir / "experiments").rglob("run.json")]
    return types.SimpleNamespace(result=result, root=root)


@pytest.mark.claim('progress bar on a terminal, one line per epoch without a TTY')
@pytest.mark.claim('epochs counted from 1 in the console ("Epoch 3/10") and the PNG\'s x axis')
def test_without_a_tty_one_line_per_epoch_counted_from_1(piped):
    out = piped.result.stdout
    assert "\r" not in out and "\x1b" not in out and "━" not in out  # no bar redrawn in place
    epochs = read_run(piped.root)["epochs_completed"]
    lines = [line for line in out.splitlines() if re.match(r"^Epoch \d+/\d+$", line) or PROGRESS_LINE.match(line)]
    expected = []
    for epoch in range(1, epochs + 1):
        expected += [f"Epoch {epoch}/4", "progress"]
    assert ["progress" if PROGRESS_LINE.match(line) else line for line in lines] == expected, out


@pytest.mark.claim('LR-on-plateau follows that direction')
@pytest.mark.claim(
    'the decision is logged (`Monitoring val_r2_score: higher is better ...`)',
    note="(an `R2Score(name='fit_quality')`: `Monitoring val_fit_quality: higher is better (the Keras metric "
         "'fit_quality' says 'up')`)")
def test_lr_on_plateau_follows_a_maximised_metric_and_the_decision_is_logged(piped):
    line = "Monitoring val_fit_quality: higher is better (the Keras metric 'fit_quality' says 'up')"
    assert line in piped.result.stderr.splitlines(), piped.result.stderr
    assert read_run(piped.root)["monitor_mode"] == "max"
    history = _history(piped.root)
    r2, rates = history["val_fit_quality"], history["learning_rate"]
    as_max, as_min = _plateau_rates(r2, "max"), _plateau_rates(r2, "min")
    print("val_fit_quality (R2):", r2, "\nrates:", rates, "\nKeras' rule, max:", as_max, "\nKeras' rule, min:", as_min)
    assert as_max != pytest.approx(as_min)  # this run tells the two directions apart
    assert rates == pytest.approx(as_max, rel=1e-6)


def _plateau_rates(values, mode, patience=1, factor=0.5, min_delta=1e-4):
    """The rate each epoch trains at under Keras' ReduceLROnPlateau rule (no cooldown)."""
    rate, best, wait, rates = RATE, None, 0, []
    for value in values:
        rates.append(rate)
        if best is None or (value - min_delta > best if mode == "max" else value + min_delta < best):
            best, wait = value, 0
            continue
        wait += 1
        if wait >= patience:
            rate, wait = rate * factor, 0
    return rates


@pytest.mark.claim('progress bar on a terminal, one line per epoch without a TTY')
def test_a_terminal_gets_a_progress_bar(tmp_path_factory):
    workdir = _workdir(tmp_path_factory, "terminal")
    settings = settings_variant(workdir, "small.py", ["nb_train_samples = 200", "nb_val_samples = 100"])
    controller, terminal = pty.openpty()
    process = subprocess.Popen(cli_command("train", "-u", str(settings), "--hparam", "nbEpoch=2"), cwd=workdir,
                               env=cli_env(), stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    chunks = []

    def read():
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the process closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        returncode = process.wait(timeout=300)
        reader.join(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    out = b"".join(chunks).decode(errors="replace")
    assert returncode == 0, out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out, out
    assert "━━━━━" in out and "\r" in out, out  # Keras' bar, redrawn in place
    assert not any(PROGRESS_LINE.match(line) for line in out.splitlines()), out  # not the batch-job lines


# ---------------------------------------------------------------------------------------------------------------
# Keras 2 settings: flow_from_directory(...) pipelines and optimizers.experimental.AdamW(...)

KERAS2_DIRECTORY_SETTINGS = '''
"""Keras 2 era settings: images read with flow_from_directory, AdamW from optimizers.experimental."""
import tensorflow as tf

workingFolder = 'experiments/keras2/from_directory'
session_name = 'from_directory'
hparams = {'hidden': 8, 'learningRate': 0.01, 'nbEpoch': 2}
model_file = 'model_keras2.py'
input_shape = (8, 8, 1)
output_activation = 'sigmoid'
random_seed = 7
nbEpoch = hparams['nbEpoch']
batch_size = 16
raw_data_dir_train = 'images/train'
raw_data_dir_val = 'images/val'
monitored_loss_name = 'val_loss'


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    generator = tf.keras.preprocessing.image.ImageDataGenerator(rescale=1 / 255.0)
    return generator.flow_from_directory(raw_data_files_folder, target_size=(8, 8), color_mode='grayscale',
                                         class_mode='binary', batch_size=batch_size, shuffle=isTraining,
                                         seed=random_seed)


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.experimental.AdamW(learning_rate=learning_rate, weight_decay=0.05)


def get_total_loss(model):
    return 'binary_crossentropy'


def get_metrics(model, loss):
    return ['accuracy']
'''


def _write_images(folder, per_class, seed):
    """8x8 grayscale PNGs: class `bar` has a bright horizontal bar, class `plain` is noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label in ("bar", "plain"):
        (folder / label).mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.normal(60, 20, size=(8, 8))
            if label == "bar":
                pixels[3:5, :] += 150
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L").save(folder / label / f"{index}.png")


@pytest.mark.claim('`flow_from_directory(...)`')
@pytest.mark.claim('`optimizers.experimental.AdamW(...)`')
def test_flow_from_directory_and_experimental_adamw_of_keras2_settings_train(tmp_path, monkeypatch):
    """84 training images in batches of 16: 84 // 16 = 5 steps an epoch (the original framework's
    `n // batch_size`; Keras' own len() is 6), trained by the Keras 3 AdamW with the settings' arguments."""
    from experiments_manager import training
    from experiments_manager.utils.optimizers import inner_optimizer

    seed = 20240
    print("image seed:", seed)
    _write_images(tmp_path / "images/train", 42, seed)
    _write_images(tmp_path / "images/val", 18, seed + 1)
    (tmp_path / "settings").mkdir()
    (tmp_path / "settings/keras2_from_directory.py").write_text(KERAS2_DIRECTORY_SETTINGS)
    shutil.copy(REPO / "tests/data/keras2/model_keras2.py", tmp_path / "settings/model_keras2.py")
    monkeypatch.chdir(tmp_path)
    outcome = training.train("settings/keras2_from_directory.py", command=["t"])
    assert outcome.status == "finished", outcome.reason
    root = tmp_path / outcome.experiment.root
    optimizer = inner_optimizer(outcome.trained_model.optimizer)
    assert type(optimizer).__name__ == "AdamW" and optimizer.weight_decay == pytest.approx(0.05)
    assert read_run(root)["learning_rate"] == pytest.approx(0.01)
    assert int(outcome.trained_model.optimizer.iterations) == 2 * (84 // 16)
    history = _history(root)
    assert history["epoch"] == [1, 2] and {"val_accuracy", "val_loss_raw"} <= set(history)
    assert history["loss"][1] < history["loss"][0]
