"""Benchmark: a sweep made with `experiments-manager sweep` beside Optuna and KerasTuner, on one problem, in one run.

The problem, the same for the three: 10 classes of 32x32x3 coloured Gaussian blobs under noise (class c: a blob of
sigma 4 px centred on cell c of a 5x2 grid, jittered by 2 px, its hue on half the colour circle, plus Gaussian
noise of std 0.3; generated with NumPy from fixed seeds: 512 training, 256 validation samples, batch 32). The model:
`Conv2D(w, 3) - MaxPool2D - Conv2D(2w, 3) - GlobalAveragePooling2D - Dense(10)` (logits), sparse categorical
cross-entropy from logits, Adam(learningRate), accuracy; the value minimised is `val_loss`. The space: learningRate
log-uniform in [1e-4, 0.1], width w in {8, 16, 24, 32} (uniform); `--trials` configurations (12), at most
`--max-epochs` epochs each (9), every trial's Keras seeded with `--seed`.

Kinds (`--kinds`), each a process of its own, the order rotating round by round (sweep optuna kerastuner, optuna
kerastuner sweep, ...) so that the machine's drift hits each alike:

- sweep: `python -m experiments_manager sweep -u SETTINGS --max-evals 12 --scheduler asha --eta 3 --min-epochs 1
  --workers 2 --seed 11` in a temporary work folder holding a settings module (`hyperopt_space`: `hp.loguniform`,
  `hp.choice`) and its model file, written by this script: `nbEpoch = 9`, `early_stopping_patience = 1000` (the
  scheduler cuts trials, not early stopping), `weights_moving_averages = False` (the peers validate the raw weights;
  `--ema` keeps the engine's default, EMA weights validated). Its trial hosts (one a worker; before issue 75, one
  process a trial segment) are children of the sweep process.
  Read after the run: sweep.json (status, best), results.csv (one row per trial), and the epochs trained: the rows
  of every trial's history.csv (one per epoch, continuous across a trial's rungs). The time to the first trial is
  when the first trial log appears in the sweep folder's trials/.
- optuna: `python tools/bench_peers.py --child optuna` (plain Keras): `optuna.create_study(direction='minimize',
  sampler=TPESampler(seed=11, n_startup_trials=3), pruner=MedianPruner(n_startup_trials=3, n_warmup_steps=1))`, 12
  trials one after the other, each `model.fit` for 9 epochs with a callback that reports val_loss per epoch
  (`trial.report`) and stops the fit when `trial.should_prune()`; value: the trial's best val_loss.
  `keras.backend.clear_session()` between trials.
- kerastuner: `python tools/bench_peers.py --child kerastuner`: `keras_tuner.Hyperband(objective='val_loss',
  max_epochs=9, factor=3, seed=11)` and `tuner.search`. Hyperband sizes itself: with 9 epochs and factor 3, one
  iteration tries 17 configurations (brackets of 9, 5 and 3) in 23 KerasTuner trials (a promotion is a trial that
  goes on from its parent's checkpoint); `--trials` does not apply. Epochs counted with a callback; best: the
  oracle's best trial's score.

Each run: wall and CPU time of its process tree (`getrusage(RUSAGE_CHILDREN)` deltas around the subprocess: the
sweep's trial hosts are counted when the sweep waits for them), peak RSS (the largest process of the tree, from
`wait4`), epochs trained, configurations tried and cut short, the best val_loss, the time from the process' start to
its first trial's start, the share of the machine's CPU time the hypervisor stole (/proc/stat's `steal`) and the
cores other processes kept busy meanwhile. The end: markdown rows for BENCHMARKS.md (medians over the rounds; the
ratios sweep / optuna and sweep / kerastuner), headed by the command line and the machine.

Usage (from the repository root):

    .venv/bin/python tools/bench_peers.py [--rounds 4] [--kinds sweep,optuna,kerastuner] [--trials 12]
        [--max-epochs 9] [--workers 2] [--seed 11] [--ema] [--baseline TREE] [--keep] [--verbose]

`--baseline TREE` adds the kind `sweep-before`: the same sweep command run by the engine of TREE (a git worktree of
an earlier commit, put first on PYTHONPATH), alternated with the others: before and after, side by side.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import importlib.util
import inspect
import json
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from bench_sweep import command_line, machine_line  # tools/ is on sys.path

if TYPE_CHECKING:
    import keras
    import numpy as np

REPO = Path(__file__).resolve().parents[1]
KINDS = ("sweep", "optuna", "kerastuner")
BEFORE = "sweep-before"  # with --baseline TREE: the same sweep by the engine of that tree
PEER_MODULES = {"optuna": "optuna", "kerastuner": "keras_tuner"}
MONITOR = "val_loss"
CLASSES, IMAGE_SIZE = 10, 32
TRAIN_SAMPLES, VAL_SAMPLES, BATCH = 512, 256, 32
NOISE, SIGMA, JITTER, HUE_SPAN = 0.3, 4.0, 2.0, 0.5
DATA_SEEDS = {"train": 0, "val": 1}
LEARNING_RATES = (1e-4, 0.1)
WIDTHS = (8, 16, 24, 32)
LAUNCHED = "BENCH_PEERS_LAUNCHED"  # the parent's time.time() at the child's start, for the time to the first trial
SUMMARY_LINES = 14  # --verbose: the sweep's last lines printed


# --- the problem: this source is also written into the sweep's settings and model files ------------------------------

def blobs(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` images (float32, count x 32 x 32 x 3) and their labels (int32): for class c a Gaussian blob of
    sigma SIGMA px centred on cell c of a 5x2 grid (jittered by JITTER px), its colour a hue on HUE_SPAN of the
    colour circle, under Gaussian noise of std NOISE; drawn from `seed`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, size=count)
    return blob_images(labels, rng), labels.astype(np.int32)


def blob_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The images (float32, N x 32 x 32 x 3) of `labels` (class c: `blobs`' blob), jitter and noise drawn from
    `rng`."""
    import numpy as np

    count = len(labels)
    grid = np.arange(IMAGE_SIZE, dtype=np.float32)
    centre_x = 4.0 + 6.0 * (labels % 5) + rng.normal(0.0, JITTER, count)
    centre_y = 10.0 + 12.0 * (labels // 5) + rng.normal(0.0, JITTER, count)
    hue = 2 * np.pi * HUE_SPAN * labels / CLASSES
    colours = 0.5 + 0.5 * np.cos(hue[:, None] - 2 * np.pi * np.arange(3)[None, :] / 3)
    blob = np.exp(-((grid[None, :, None] - centre_y[:, None, None]) ** 2
                    + (grid[None, None, :] - centre_x[:, None, None]) ** 2) / (2 * SIGMA ** 2))
    images = blob[..., None] * colours[:, None, None, :] + rng.normal(0.0, NOISE, (count, IMAGE_SIZE, IMAGE_SIZE, 3))
    return images.astype(np.float32)


def convnet(width: int) -> keras.Model:
    """Conv2D(width) - MaxPool2D - Conv2D(2 width) - GlobalAveragePooling2D - Dense(10) logits, on 32x32x3 images."""
    import keras

    images = keras.Input((32, 32, 3), name="image")
    hidden = keras.layers.Conv2D(width, 3, activation="relu", padding="same")(images)
    hidden = keras.layers.MaxPooling2D()(hidden)
    hidden = keras.layers.Conv2D(2 * width, 3, activation="relu", padding="same")(hidden)
    hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    return keras.Model(images, keras.layers.Dense(10, name="logits")(hidden), name="blobs_convnet")


def compiled(model: keras.Model, learning_rate: float) -> keras.Model:
    """`model` compiled as every kind trains it: Adam, cross-entropy from logits, accuracy."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


DATA_CONSTANTS = (f"CLASSES, IMAGE_SIZE = {CLASSES}, {IMAGE_SIZE}\n"
                  f"NOISE, SIGMA, JITTER, HUE_SPAN = {NOISE!r}, {SIGMA!r}, {JITTER!r}, {HUE_SPAN!r}\n")

MODEL_FILE = f'''"""The benchmark's convnet (tools/bench_peers.py writes this file)."""

from __future__ import annotations

import keras


{inspect.getsource(convnet)}

def model(usersettings):
    return convnet(int(usersettings.hparams["width"]))
'''

# how the benches' settings files train, as `compiled` does: Adam(learningRate), cross-entropy from logits, accuracy
TRAINING_FUNCTIONS = '''def get_learningRate():
    return hparams["learningRate"]


def get_optimizer(model, loss, learning_rate):
    return keras.optimizers.Adam(learning_rate)


def get_total_loss(model):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def get_metrics(model, loss):
    return ["accuracy"]
'''

SETTINGS_FILE = f'''"""Coloured blobs, swept (tools/bench_peers.py writes this file)."""

from __future__ import annotations

from math import log

import keras
import numpy as np
import tensorflow as tf
from hyperopt import hp

workingFolder = "experiments"
session_name = "peers"
model_file = "model_peers.py"
hparams = {{"learningRate": 0.003, "width": 16, "nbEpoch": @MAX_EPOCHS@}}
hyperopt_space = {{"learningRate": hp.loguniform("learningRate", log({LEARNING_RATES[0]!r}),
                                                 log({LEARNING_RATES[1]!r})),
                  "width": hp.choice("width", {list(WIDTHS)!r})}}
nbEpoch = hparams["nbEpoch"]
random_seed = @SEED@
early_stopping_patience = 1000  # the scheduler cuts trials, not early stopping
monitored_loss_name = "{MONITOR}"
weights_moving_averages = @EMA@
batch_size = {BATCH}
nb_train_samples = {TRAIN_SAMPLES}
nb_val_samples = {VAL_SAMPLES}
raw_data_dir_train = ""
raw_data_dir_val = ""
useXLA = False

{DATA_CONSTANTS}

{inspect.getsource(blobs)}

{inspect.getsource(blob_images)}

def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    images, labels = blobs(nb_train_samples if isTraining else nb_val_samples, {DATA_SEEDS["train"]} if isTraining
                           else {DATA_SEEDS["val"]})
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if isTraining:
        dataset = dataset.shuffle(len(labels), seed=random_seed)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


{TRAINING_FUNCTIONS}'''


def write_settings(folder: Path, max_epochs: int, seed: int, ema: bool) -> Path:
    """The sweep's settings module and model file in `folder`; returns the settings' path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_peers.py").write_text(MODEL_FILE)
    settings = (SETTINGS_FILE.replace("@MAX_EPOCHS@", str(max_epochs)).replace("@SEED@", str(seed))
                .replace("@EMA@", str(ema)))
    (folder / "settings_peers.py").write_text(settings)
    return folder / "settings_peers.py"


# --- the peers, each in a child process -------------------------------------------------------------------------------

def since_launch() -> float:
    """Seconds since the parent started this process (its time.time() in the environment), else NaN."""
    launched = os.environ.get(LAUNCHED)
    return time.time() - float(launched) if launched else float("nan")


def child_optuna(trials: int, max_epochs: int, seed: int) -> dict[str, Any]:
    """The Optuna study, in this process: TPE (3 random startup trials), the median pruner; what it found."""
    import keras
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    x, y = blobs(TRAIN_SAMPLES, DATA_SEEDS["train"])
    val_x, val_y = blobs(VAL_SAMPLES, DATA_SEEDS["val"])
    epochs, first = [0], [float("nan")]

    class Reporter(keras.callbacks.Callback):
        """Reports each epoch's val_loss to the trial; stops the fit when the pruner says so."""

        def __init__(self, trial: optuna.Trial) -> None:
            """A reporter to `trial`."""
            super().__init__()
            self.trial, self.pruned = trial, False

        def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
            """Counts the epoch, reports its val_loss, and stops the fit when the trial should be pruned."""
            epochs[0] += 1
            self.trial.report(float((logs or {})[MONITOR]), epoch)
            if self.trial.should_prune():
                self.pruned = True
                self.model.stop_training = True

    def objective(trial: optuna.Trial) -> float:
        """One trial: the model of the suggested width and learning rate, at most `max_epochs` epochs."""
        if first[0] != first[0]:
            first[0] = since_launch()
        learning_rate = trial.suggest_float("learningRate", *LEARNING_RATES, log=True)
        width = trial.suggest_int("width", WIDTHS[0], WIDTHS[-1], step=WIDTHS[1] - WIDTHS[0])
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        model = compiled(convnet(width), learning_rate)
        reporter = Reporter(trial)
        history = model.fit(x, y, batch_size=BATCH, epochs=max_epochs, validation_data=(val_x, val_y),
                            callbacks=[reporter], verbose=0)
        if reporter.pruned:
            raise optuna.TrialPruned()
        return float(min(history.history[MONITOR]))

    start = time.perf_counter()
    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=3),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    study.optimize(objective, n_trials=trials)
    pruned = sum(trial.state == optuna.trial.TrialState.PRUNED for trial in study.trials)
    return {"best": study.best_value, "epochs": epochs[0], "configurations": len(study.trials), "cut": pruned,
            "search": time.perf_counter() - start, "first": first[0],
            "best_hparams": {name: value for name, value in study.best_params.items()}}


EPOCHS_SEEN = {"count": 0, "first": float("nan")}  # KerasTuner deep-copies callbacks per trial: counted here


def child_kerastuner(max_epochs: int, seed: int, folder: Path) -> dict[str, Any]:
    """The KerasTuner Hyperband search, in this process; what it found."""
    import keras
    import keras_tuner

    x, y = blobs(TRAIN_SAMPLES, DATA_SEEDS["train"])
    val_x, val_y = blobs(VAL_SAMPLES, DATA_SEEDS["val"])

    class EpochCounter(keras.callbacks.Callback):
        """Counts the epochs trained (in a module-level dict: each trial gets a deep copy of this callback)."""

        def on_train_begin(self, logs: Optional[dict[str, Any]] = None) -> None:
            """Notes when the first trial's training starts."""
            if EPOCHS_SEEN["first"] != EPOCHS_SEEN["first"]:
                EPOCHS_SEEN["first"] = since_launch()

        def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
            """Counts the epoch."""
            EPOCHS_SEEN["count"] += 1

    def hypermodel(hp: keras_tuner.HyperParameters) -> keras.Model:
        """The model of the suggested width and learning rate, Keras seeded as every trial of every kind is."""
        learning_rate = hp.Float("learningRate", *LEARNING_RATES, sampling="log")
        width = hp.Int("width", WIDTHS[0], WIDTHS[-1], step=WIDTHS[1] - WIDTHS[0])
        keras.utils.set_random_seed(seed)
        return compiled(convnet(width), learning_rate)

    start = time.perf_counter()
    tuner = keras_tuner.Hyperband(hypermodel, objective=MONITOR, max_epochs=max_epochs, factor=3, seed=seed,
                                  directory=str(folder), project_name="peers", overwrite=True)
    with contextlib.redirect_stdout(sys.stderr):  # its progress lines: stdout is the report's
        tuner.search(x, y, batch_size=BATCH, validation_data=(val_x, val_y), callbacks=[EpochCounter()], verbose=0)
    trials = list(tuner.oracle.trials.values())
    configurations = [trial for trial in trials if "tuner/trial_id" not in trial.hyperparameters.values]
    promoted = {trial.hyperparameters.values["tuner/trial_id"] for trial in trials
                if "tuner/trial_id" in trial.hyperparameters.values}
    longest = max(trial.hyperparameters.values.get("tuner/epochs", max_epochs) for trial in trials)
    # cut short: a configuration whose last trial stopped below the longest any trial trained
    cut = 0
    for trial in configurations:
        last = trial
        while last.trial_id in promoted:
            last = next(other for other in trials
                        if other.hyperparameters.values.get("tuner/trial_id") == last.trial_id)
        cut += last.hyperparameters.values.get("tuner/epochs", max_epochs) < longest
    (best,) = tuner.oracle.get_best_trials(1)
    return {"best": float(best.score), "epochs": EPOCHS_SEEN["count"], "configurations": len(configurations),
            "cut": cut, "tuner_trials": len(trials), "search": time.perf_counter() - start,
            "first": EPOCHS_SEEN["first"],
            "best_hparams": {name: best.hyperparameters.values[name] for name in ("learningRate", "width")}}


def child(kind: str, arguments: argparse.Namespace) -> None:
    """`--child KIND`: runs that peer's search in this process and prints its report as JSON, the last line."""
    start = time.perf_counter()
    import keras  # noqa: F401  (TensorFlow's import: timed apart)

    imported = time.perf_counter() - start
    if kind == "optuna":
        report = child_optuna(arguments.trials, arguments.max_epochs, arguments.seed)
    else:
        report = child_kerastuner(arguments.max_epochs, arguments.seed, Path(arguments.folder))
    report.update(imports=imported, inside=time.perf_counter() - start)
    print(json.dumps(report), flush=True)


# --- measuring the runs -----------------------------------------------------------------------------------------------

def machine_seconds() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of the whole machine since boot, all CPUs together (/proc/stat: busy is all but
    idle, iowait and steal; stolen is `steal`, the time the hypervisor gave to other guests); zeros off Linux."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0, 0.0
    fields += [0] * (8 - len(fields))
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def sweep_command(settings: Path, arguments: argparse.Namespace) -> list[str]:
    """The `experiments-manager sweep` command of a run."""
    return [sys.executable, "-m", "experiments_manager", "sweep", "-u", str(settings), "--max-evals",
            str(arguments.trials), "--scheduler", "asha", "--eta", "3", "--min-epochs", "1", "--workers",
            str(arguments.workers), "--seed", str(arguments.seed)]


def sweep_outcome(folder: Path, log: Path, arguments: argparse.Namespace) -> dict[str, Any]:
    """What a finished sweep in `folder` found: best value, epochs (history.csv rows), trials, summary lines."""
    (sweep,) = (folder / "experiments").glob("*_sweep_*")
    spec = json.loads((sweep / "sweep.json").read_text())
    with open(sweep / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    epochs = 0
    for row in rows:
        history = Path(row["experiment"]) / "history.csv"
        if not history.is_absolute():
            history = folder / history
        with open(history, newline="") as handle:
            epochs += sum(1 for _ in csv.DictReader(handle))
    listed = sum(int(float(row["epochs_trained"])) for row in rows if row.get("epochs_trained"))
    statuses = collections.Counter(row["status"] for row in rows)
    problems = []
    if spec.get("status") != "finished" or len(rows) != arguments.trials:
        problems.append(f"sweep.json: status {spec.get('status')}, results.csv: {len(rows)} rows "
                        f"({dict(statuses)})")
    if listed != epochs:
        problems.append(f"epochs: {epochs} history.csv rows, results.csv's epochs_trained add up to {listed}")
    highest = max((int(float(row["rung"])) for row in rows if row.get("rung")), default=arguments.max_epochs)
    cut = sum(1 for row in rows if row.get("rung") and int(float(row["rung"])) < highest)
    best = spec["best"]
    output = log.read_text(errors="replace").splitlines()
    attempts = sum(1 for line in output if re.match(r"trial \d+/\d+ (paused|finished|failed)", line))
    seconds = [float(row["seconds"]) / max(1, int(float(row["epochs_trained"]))) for row in rows
               if row.get("seconds") and row.get("epochs_trained")]
    return {"best": float(best["best_value"]), "epochs": epochs, "configurations": len(rows), "cut": cut,
            "trial_seconds_per_epoch": statistics.median(seconds) if seconds else float("nan"),
            "best_hparams": {name: best.get("hparams", {}).get(name, row_value(rows, best, name))
                             for name in ("learningRate", "width")},
            "device_hours": spec.get("device_hours"), "statuses": dict(statuses), "problems": problems,
            "attempts": attempts, "summary": output[-SUMMARY_LINES:], "sweep_folder": str(sweep)}


def row_value(rows: list[dict[str, str]], best: dict[str, Any], name: str) -> Any:
    """hparam `name` of the best trial's results.csv row (sweep.json's best may not repeat the hparams)."""
    for row in rows:
        if str(row.get("trial")) == str(best.get("trial")):
            return row.get(name)
    return None


def measured(kind: str, round_number: int, root: Path, arguments: argparse.Namespace) -> dict[str, Any]:
    """Runs one kind in a new process in its own folder under `root`, timed; what it found and what it cost."""
    folder = root / f"{kind}-r{round_number}"
    folder.mkdir(parents=True)
    if kind.startswith("sweep"):
        command = sweep_command(write_settings(folder, arguments.max_epochs, arguments.seed, arguments.ema), arguments)
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--trials", str(arguments.trials),
                   "--max-epochs", str(arguments.max_epochs), "--seed", str(arguments.seed), "--folder", str(folder)]
    log, out = folder / "output.log", folder / "report.json"
    load = os.getloadavg()[0]
    usage, (busy, stolen) = resource.getrusage(resource.RUSAGE_CHILDREN), machine_seconds()
    start = time.perf_counter()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **{LAUNCHED: repr(time.time())})
    if kind == BEFORE:  # the engine of an earlier tree (`--baseline`), the same command line
        env["PYTHONPATH"] = str(Path(arguments.baseline).resolve()) + os.pathsep + env.get("PYTHONPATH", "")
    first = float("nan")
    with open(log, "wb") as errors, open(out, "wb") as output:
        sweep = kind.startswith("sweep")
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=errors if sweep else output,
                                   stderr=subprocess.STDOUT if sweep else errors)
        while True:
            pid, status, tree = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if sweep and first != first and next((folder / "experiments").glob("*_sweep_*/trials/*.log"),
                                                          None):
                first = time.perf_counter() - start
            time.sleep(0.05)
    wall = time.perf_counter() - start
    after, (busy_after, stolen_after) = resource.getrusage(resource.RUSAGE_CHILDREN), machine_seconds()
    process.returncode = code = os.waitstatus_to_exitcode(status)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise SystemExit(f"{kind}, round {round_number}: exit code {code} ({shlex.join(command)}):\n"
                         + "\n".join(tail))
    if sweep:
        result = sweep_outcome(folder, log, arguments)
        result["first"] = first
    else:
        result = json.loads(out.read_text().strip().splitlines()[-1])
        result["problems"] = []
    cores = os.cpu_count() or 1
    result.update(kind=kind, round=round_number, wall=wall, cpu=cpu, rss=tree.ru_maxrss / 1024, load=load,
                  steal=(stolen_after - stolen) / (wall * cores),
                  others=max(0.0, (busy_after - busy) - cpu) / wall, folder=str(folder))
    return result


# --- the report -------------------------------------------------------------------------------------------------------

def run_line(run: dict[str, Any]) -> str:
    """One line per run: kind, round, wall, CPU, epochs, best val_loss and the machine meanwhile."""
    hparams = run.get("best_hparams") or {}
    found = ", ".join(f"{name} {float(value):.3g}" for name, value in hparams.items() if value is not None)
    return (f"round {run['round']}, {run['kind']:10}: wall {run['wall']:6.1f} s, CPU {run['cpu']:6.1f} s, "
            f"{run['epochs']:3d} epochs, {run['configurations']} configurations ({run['cut']} cut short), best "
            f"{MONITOR} {run['best']:.4f} ({found}), first trial after {run['first']:4.1f} s, peak RSS "
            f"{run['rss']:.0f} MB, steal {run['steal']:.1%}, other processes {run['others']:.2f} cores, load "
            f"{run['load']:.1f}"
            + (f"\n  {run['attempts']} trial segments (promotions included); a trial's seconds per epoch trained, "
               f"what its segments waited for included: {run['trial_seconds_per_epoch']:.1f} (median)"
               if "attempts" in run else "")
            + (f"\n  {run['tuner_trials']} KerasTuner trials (promotions included)" if "tuner_trials" in run else "")
            + "".join(f"\n  PROBLEM: {problem}" for problem in run["problems"]))


def median(runs: list[dict[str, Any]], key: str) -> float:
    """The median of `key` over `runs`."""
    return statistics.median(float(run[key]) for run in runs)


def span(runs: list[dict[str, Any]], key: str, form: str) -> str:
    """'median (lowest-highest)' of `key` over `runs`, each formatted with `form`."""
    values = [float(run[key]) for run in runs]
    if len(values) == 1:
        return format(values[0], form)
    return f"{format(statistics.median(values), form)} ({format(min(values), form)}-{format(max(values), form)})"


def table(runs: dict[str, list[dict[str, Any]]], kinds: list[str]) -> list[str]:
    """The markdown rows: per kind medians over the rounds, then the sweep's ratios to each peer."""
    header = ["kind", "wall, median (s)", "CPU, median (s)", "epochs trained, median (range)",
              "configurations (cut short)", f"best {MONITOR}, median (range)", "wall per epoch (s)",
              "first trial after (s)", "peak RSS (MB)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for kind in kinds:
        group = runs[kind]
        cells = [kind, f"{median(group, 'wall'):.1f}", f"{median(group, 'cpu'):.1f}", span(group, "epochs", ".0f"),
                 f"{median(group, 'configurations'):.0f} ({median(group, 'cut'):.0f})", span(group, "best", ".4f"),
                 f"{statistics.median(run['wall'] / max(1, run['epochs']) for run in group):.2f}",
                 f"{median(group, 'first'):.1f}", f"{median(group, 'rss'):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if "sweep" in kinds:
        for peer in (kind for kind in kinds if kind != "sweep"):
            ours, theirs = runs["sweep"], runs[peer]
            gap = median(ours, "best") / median(theirs, "best") - 1
            per_epoch = (statistics.median(run["wall"] / max(1, run["epochs"]) for run in ours)
                         / statistics.median(run["wall"] / max(1, run["epochs"]) for run in theirs))
            cells = [f"sweep / {peer}", f"{median(ours, 'wall') / median(theirs, 'wall'):.2f}",
                     f"{median(ours, 'cpu') / median(theirs, 'cpu'):.2f}",
                     f"{median(ours, 'epochs') / median(theirs, 'epochs'):.2f}", "",
                     f"{gap:+.1%}", f"{per_epoch:.2f}", "", f"{median(ours, 'rss') / median(theirs, 'rss'):.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def best_lines(runs: dict[str, list[dict[str, Any]]], kinds: list[str]) -> list[str]:
    """'best val_loss: the sweep's within X % of Optuna's', one line per peer (none without the sweep)."""
    lines = []
    for peer in (kind for kind in kinds if kind != "sweep" and "sweep" in kinds):
        ours, theirs = median(runs["sweep"], "best"), median(runs[peer], "best")
        gap = ours / theirs - 1
        verdict = "lower: better" if gap < 0 else "higher: worse" if gap > 0 else "the same"
        name = {"optuna": "Optuna", "kerastuner": "KerasTuner", BEFORE: "the earlier tree"}[peer]
        lines.append(f"best {MONITOR}: the sweep's {ours:.4f} within {abs(gap):.1%} of {name}'s {theirs:.4f} "
                     f"({verdict})")
    return lines


def check_peers(kinds: list[str]) -> None:
    """Exits 2 with one line when a peer the run compares with is not installed."""
    missing = [PEER_MODULES[kind] for kind in kinds if kind in PEER_MODULES
               and importlib.util.find_spec(PEER_MODULES[kind]) is None]
    if missing:
        print(f"bench_peers: {' and '.join(missing)} not installed: pip install '.[bench]'", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    """Parses the options; runs the children (`--child`) or the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="runs of each kind, the order rotating (default 4)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"a subset of {','.join(KINDS)}")
    parser.add_argument("--trials", type=int, default=12, help="configurations of the sweep and of Optuna")
    parser.add_argument("--max-epochs", type=int, default=9, help="epochs a configuration trains at most")
    parser.add_argument("--workers", type=int, default=2, help="the sweep's --workers (trials at once)")
    parser.add_argument("--seed", type=int, default=11, help="the searches' seed, and every trial's Keras seed")
    parser.add_argument("--ema", action="store_true",
                        help="the sweep's trials validate the EMA weights (the engine's default; default: off, the "
                             "raw weights, as the peers)")
    parser.add_argument("--baseline", metavar="TREE",
                        help=f"also run the sweep with the engine of this source tree (a git worktree of an earlier "
                             f"commit), as the kind {BEFORE!r}, alternated with the others")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (its path is printed)")
    parser.add_argument("--verbose", action="store_true", help="print each sweep's last lines (its summary)")
    parser.add_argument("--child", choices=KINDS[1:], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.child, arguments)
        return
    kinds = [kind for kind in arguments.kinds.split(",") if kind]
    if arguments.baseline:
        kinds.insert(1, BEFORE)
    unknown = sorted(set(kinds) - set(KINDS) - {BEFORE})
    if unknown or not kinds:
        parser.error(f"--kinds: expected a subset of {','.join(KINDS)}, got {arguments.kinds!r}")
    check_peers([kind for kind in kinds if kind in KINDS])
    print(f"## {', '.join(kinds)}: {arguments.trials} configurations x at most {arguments.max_epochs} epochs, "
          f"seed {arguments.seed}, sweep --workers {arguments.workers}, {arguments.rounds} rounds ({machine_line()})",
          flush=True)
    runs: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    root = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    start = time.perf_counter()
    try:
        for round_index in range(arguments.rounds):
            shift = round_index % len(kinds)
            for kind in kinds[shift:] + kinds[:shift]:
                run = measured(kind, round_index + 1, root, arguments)
                runs[kind].append(run)
                print(run_line(run), flush=True)
                if arguments.verbose and kind == "sweep":
                    print("  the sweep's last lines:\n" + "\n".join(f"    {line}" for line in run["summary"]),
                          flush=True)
    finally:
        if arguments.keep:
            print(f"work folder kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    sweep_text = shlex.join(["experiments-manager", "sweep", "-u", "SETTINGS", *sweep_command(Path("SETTINGS"),
                                                                                            arguments)[6:]])
    print(f"\nCommand: `{command_line()}` ({machine_line()}). Medians of {arguments.rounds} round(s), each kind its "
          f"own process, the order rotating. sweep: `{sweep_text}` (settings written by the tool: `hyperopt_space` "
          f"loguniform learningRate, choice width, nbEpoch {arguments.max_epochs}, early_stopping_patience 1000, "
          f"weights_moving_averages {arguments.ema}); optuna: TPE (3 startup trials) + MedianPruner (3 startup "
          f"trials, 1 warm-up step), {arguments.trials} trials in one process; kerastuner: Hyperband (max_epochs "
          f"{arguments.max_epochs}, factor 3, one iteration) in one process. CPU: the process tree's. Peak RSS: the "
          f"largest process of the tree.\n", flush=True)
    lines = table(runs, kinds)
    print("\n".join(lines) + "\n")
    print("\n".join(best_lines(runs, kinds)))
    problems = [problem for group in runs.values() for run in group for problem in run["problems"]]
    print(f"\nchecks: {len(problems)} problem(s)" + "".join(f"\n  {problem}" for problem in problems))
    print(f"{', '.join(kinds)}: {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
