"""Benchmark: the engine's `train` against a plain `model.fit` on the same model, data and EMA optimizer.

Each measurement runs in its own process (so TensorFlow state never carries over),
alternating the kinds, and reports the median wall time of each (and the CPU time
of its process) and the ratios. Timed: from building the input pipelines to the
end of training (the engine's run includes its export, checkpoints, TensorBoard
scalars, weight histograms, graph, HParams, curves and projector).

Workloads: the regression example (`--samples`, default 100 000; `--epochs`, default 6) or `--workload mlp`: an
MLP of 3x256 on 40 000 generated samples of 32 features (`--samples`), batch 128, 16 epochs (issue 47's).

Kinds: `engine` (the defaults), `plain` (`model.fit` with the same EMA optimizer), and the cost table's
`engine-no-<feature>`: the defaults with one feature switched off (`FEATURES` below: the raw weights' validation,
the EMA swap, checkpoints, exports, histograms, TensorBoard, the PNG, history.csv/run.json, fsyncs). Features a
setting turns off are switched off by that setting; the others in the bench worker only (never a setting of the
engine: a run without checkpoints cannot resume). `--baseline CHECKOUT` alternates the engine of an earlier commit
too. The engine's rows also report how many fsyncs it made and the seconds they took (all threads).
Also times `experiments-manager --help`. `--logging-costs` times instead each
TensorBoard / report callback alone on the trained regression model (median of
20 calls each, in this process): what one epoch end (or the end of training) costs.

Usage (from the repository root):

    .venv/bin/python tools/bench_train.py [--workload mlp] [--rounds 4] [--samples 100000] [--epochs 6]
                                          [--every-epoch] [--kinds engine,plain] [--baseline CHECKOUT]
                                          [--max-steal PERCENT] [--phases]
    .venv/bin/python tools/bench_train.py --logging-costs
    .venv/bin/python tools/bench_train.py --training-thread [--workload mlp] [--every-epoch]

Each round's line gives the share of the machine's CPU time the hypervisor stole while each run ran (`steal` in
/proc/stat): on a shared virtual machine, the main cause of runs of the same code differing by 20-60 %.
`--max-steal PERCENT` leaves out and runs again a round in which a run lost more than that. `--phases` also
reports where each kind's `fit` spends its time (the training steps, the validation passes, the epoch ends, the end
of `fit`): the engine's excess over plain Keras, found.

`--training-thread` runs the engine once in this process and prints the time each callback hook took on the
training thread (exports written in the background not counted): on a busy machine, a steadier measure of what
the engine adds than the wall time of whole runs.
"""

import argparse
import collections
import json
import os
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


# The engine's default features, each switched off alone in a `engine-no-<feature>` kind: (what it is, how a user
# turns it off or makes it cheaper; None: not a setting, switched off in the bench worker only).
FEATURES = {
    "raw-validation": ("the raw weights' validation pass (`val_*_raw`), on its schedule",
                       "validate_raw_weights = False, or raw_validation_freq = N"),
    "ema-swap": ("swapping the EMA weights in for validation and back (Keras' SwapEMAWeights)",
                 "weights_moving_averages = False (no EMA at all)"),
    "checkpoints": ("the resumable checkpoint at each epoch end (weights, optimizer, state; durable)", None),
    "exports": ("the SavedModel versions (on improvement, or every epoch)", "save_only_last_best_model = True"),
    "histograms": ("the weight histograms", "histogram_freq = 0, or N (every N epochs)"),
    "tensorboard": ("the epoch scalars, HParams, graph and projector", None),
    "png": ("training_curves.png, drawn in a thread", None),
    "history": ("history.csv and run.json at each epoch end", None),
    "fsync": ("`os.fsync` of the durable commits (checkpoints, versions, run.json)", None),
}
OFF_IN_SETTINGS = {"raw-validation": "validate_raw_weights = False\n", "histograms": "histogram_freq = 0\n"}
KINDS = ("engine", *(f"engine-no-{feature}" for feature in FEATURES), "plain")
# what `measure` returns of one run: wall seconds of the timed part, CPU seconds of the whole worker process, the
# fsyncs of an engine run, the share of the machine's CPU time the hypervisor stole while it ran (0 to 1, or None
# where not known), and with --phases the seconds of each of fit's phases (`PHASES`)
Measured = collections.namedtuple("Measured", "seconds cpu fsyncs steal phases")
MAX_TRIES_PER_ROUND = 3  # --max-steal: tries per round kept, at most
FSYNCS = {"count": 0, "seconds": 0.0}  # in an engine worker: every os.fsync, counted and timed
# the workloads: the regression example (`--samples`, `--epochs`) or an MLP of 3x256 on 40 000 generated samples of
# 32 features, 16 epochs (issue 47's)
MLP_MODEL = """import tensorflow as tf


def model(usersettings):
    inputs = tf.keras.Input(shape=(32,), name='input')
    hidden = inputs
    for _ in range(3):
        hidden = tf.keras.layers.Dense(256, activation='relu')(hidden)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(1, name='prediction')(hidden), name='mlp')
"""
MLP_SETTINGS = """import numpy as np
import tensorflow as tf

workingFolder = 'experiments/bench_mlp'
session_name = 'mlp'
hparams = {'learningRate': 0.001}
model_file = 'examples/bench_mlp_model.py'
random_seed = 42
nbEpoch = 16
early_stopping_patience = 1000
batch_size = 128
nb_train_samples = 40000
nb_val_samples = 10000


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)


def get_metrics(model, loss):
    return ['mean_absolute_error']


def get_total_loss(model):
    return 'mean_squared_error'


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    rng = np.random.default_rng(0 if isTraining else 1)
    samples = nb_train_samples if isTraining else nb_val_samples
    x = rng.normal(size=(samples, 32)).astype(np.float32)
    w = np.random.default_rng(7).normal(size=(32, 1)).astype(np.float32)
    y = (np.sin(x @ w) + 0.1 * rng.normal(size=(samples, 1))).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if isTraining:
        dataset = dataset.shuffle(samples, seed=random_seed)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
"""


def switch_off(feature):
    """In an engine worker: makes `feature`'s callbacks do nothing (a bench baseline, never a setting)."""
    import keras

    from experiments_manager import callbacks as ours

    def nothing(*args, **kwargs):
        return None

    def silence(owner, *hooks):
        for hook in hooks:
            setattr(owner, hook, nothing)

    if feature == "ema-swap":  # the engine's EMASwap, or (an older engine) Keras' SwapEMAWeights it subclasses
        silence(keras.callbacks.SwapEMAWeights, "on_test_begin", "on_test_end", "on_predict_begin",
                "on_predict_end", "on_train_end", "on_epoch_end")
        if hasattr(ours, "EMASwap"):
            silence(ours.EMASwap, "on_test_begin", "on_test_end")
    elif feature == "checkpoints":
        def mark(self, epoch, logs=None):
            self.epochs_completed = epoch + 1
        ours.TrainingCheckpoint.on_epoch_end = mark
    elif feature == "exports":
        silence(ours.ExportOnImprovement, "on_epoch_end", "on_train_end")
    elif feature == "tensorboard":
        silence(ours.EpochScalars, "on_epoch_end")
        silence(ours.HParamsLogger, "on_train_begin", "on_epoch_end", "on_train_end")
        silence(ours.ModelGraph, "on_train_begin")
        silence(ours.ProjectorLogger, "on_epoch_end", "on_train_end")
    elif feature == "png":
        silence(ours.TrainingCurves, "on_epoch_end", "on_train_end", "finish")
    elif feature == "history":
        silence(ours.HistoryCSV, "on_epoch_end")
        silence(ours.RunInfoUpdater, "on_epoch_end")


def counted_fsyncs(skip=False):
    """Replaces `os.fsync` in this process by one that counts and times the calls (or, with `skip`, does nothing:
    the `engine-no-fsync` baseline)."""
    real = os.fsync

    def fsync(descriptor):
        start = time.perf_counter()
        if not skip:
            real(descriptor)
        FSYNCS["count"] += 1
        FSYNCS["seconds"] += time.perf_counter() - start

    os.fsync = fsync


def bench_settings(workdir, samples, every_epoch, off=None, workload="regression"):
    """The regression example with more samples (or the MLP workload); exports on improvement (the default) or
    every epoch; with `off` a feature that is a setting ("raw-validation", "histograms") switched off."""
    if not (workdir / "examples").exists():
        shutil.copytree(REPO / "examples", workdir / "examples")
        (workdir / "examples/bench_mlp_model.py").write_text(MLP_MODEL)
    extra = OFF_IN_SETTINGS.get(off, "")
    if workload == "mlp":
        path = workdir / f"examples/bench_mlp_{off or 'defaults'}.py"
        text = MLP_SETTINGS + f"\nnb_train_samples = {samples}\n"
    else:
        path = workdir / f"examples/regression/bench_{off or 'defaults'}.py"
        text = (REPO / SETTINGS).read_text() + f"\nnb_train_samples = {samples}\nearly_stopping_patience = 1000\n"
    path.write_text(text + f"\nsave_only_last_best_model = {not every_epoch}\n" + extra)
    return path


PHASES = {"training steps": 0.0, "validation": 0.0, "epoch ends": 0.0, "end of fit": 0.0}


def record_phases():
    """In a worker: adds up, in PHASES, where `fit`'s time goes: the training steps (an epoch's begin to its
    validation's), the validation passes `fit` runs, the epoch-end hooks (the engine's raw-weights validation,
    checkpoint, exports, logs), and the end of `fit` (the last epoch's end to `fit` returning). Only epoch- and
    validation-level hooks: Keras still dispatches batch ends as it would without them."""
    import keras

    fit = keras.Model.fit
    marks = []

    class Mark(keras.callbacks.Callback):
        def __init__(self, edge):
            super().__init__()
            self.edge = edge  # "first" or "last" of the callbacks

        def _mark(self, event):
            marks.append((event, self.edge, time.perf_counter()))

        def on_epoch_begin(self, epoch, logs=None):
            self._mark("epoch_begin")

        def on_test_begin(self, logs=None):
            self._mark("test_begin")

        def on_test_end(self, logs=None):
            self._mark("test_end")

        def on_epoch_end(self, epoch, logs=None):
            self._mark("epoch_end")

    def timed_fit(model, *args, callbacks=None, **kwargs):
        marks.clear()
        history = fit(model, *args, callbacks=[Mark("first"), *(callbacks or []), Mark("last")], **kwargs)
        returned = time.perf_counter()
        at = {}
        for event, edge, moment in marks:
            if event == "epoch_begin" and edge == "first":
                at = {"epoch_begin": moment}
            elif event == "test_begin" and edge == "first" and "test_begin" not in at:  # fit's own validation
                PHASES["training steps"] += moment - at["epoch_begin"]
                at["test_begin"] = moment
            elif event == "test_end" and edge == "last" and "test_end" not in at:
                PHASES["validation"] += moment - at["test_begin"]
                at["test_end"] = moment
            elif event == "epoch_end" and edge == "first":
                at["epoch_end"] = moment
            elif event == "epoch_end" and edge == "last":
                PHASES["epoch ends"] += moment - at.get("test_end", at["epoch_end"])  # fit's bookkeeping too
                at["last_end"] = moment
        PHASES["end of fit"] += returned - at.get("last_end", returned)
        return history

    keras.Model.fit = timed_fit


def run_engine(settings, epochs):
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings import load_settings
    from experiments_manager.training import Trainer

    settings = load_settings(settings, {"nbEpoch": epochs})
    trainer = Trainer(Experiment.create(settings, ["bench"]), settings)
    start = time.perf_counter()
    outcome = trainer.run()
    assert outcome.status == "finished", outcome.reason
    return time.perf_counter() - start


def run_plain(settings, epochs):
    import keras

    from experiments_manager.settings import load_settings
    from experiments_manager.training.ema import WeightAverages
    from experiments_manager.training import build_model

    settings = load_settings(settings, {"nbEpoch": epochs})
    keras.utils.set_random_seed(settings.runtime.random_seed)
    start = time.perf_counter()
    train = settings.data.get_input_pipeline("", True, settings.training.batch_size, epochs)
    val = settings.data.get_input_pipeline("", False, settings.training.batch_size, epochs)
    model = build_model(settings)
    loss = settings.training.get_total_loss(model)
    averages = WeightAverages(settings.training.ema_momentum, warmup=settings.training.ema_warmup)
    optimizer = averages.attach(settings.training.get_optimizer(model, loss, settings.training.get_learning_rate()))
    model.compile(optimizer=optimizer, loss=loss, metrics=settings.training.get_metrics(model, loss))
    model.fit(train, validation_data=val, epochs=epochs, verbose=2, shuffle=False)
    return time.perf_counter() - start


def stolen_seconds():
    """CPU seconds the hypervisor gave to other guests since boot, all CPUs together (the `steal` column of
    /proc/stat), or None where there is no such column (not Linux, or no virtual machine accounting)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def measure(kind, settings, epochs, workdir, baseline=None, phases=False):
    """One run of `kind`, a `Measured`. The `baseline` kind runs the engine (defaults) of the checkout at
    `baseline`."""
    worker, repo = ("engine", Path(baseline)) if kind == "baseline" else (kind, REPO)
    command = [sys.executable, __file__, "--worker", worker, "--settings", str(settings), "--epochs", str(epochs),
               *(["--phases"] if phases else [])]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(repo))
    before, stolen, start = resource.getrusage(resource.RUSAGE_CHILDREN), stolen_seconds(), time.perf_counter()
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, check=True)
    elapsed, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    steal = None if stolen is None else (stolen_seconds() - stolen) / (elapsed * (os.cpu_count() or 1))
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return Measured(report["seconds"], cpu, report.get("fsyncs"), steal, report.get("phases"))


def logging_costs(workdir, repeats=20):
    """{callback: median seconds per call} of the reporting callbacks, on a 2-epoch run of the regression example."""
    from experiments_manager import callbacks as ours
    from experiments_manager import training
    from experiments_manager.settings import load_settings

    os.chdir(workdir)
    settings = load_settings(bench_settings(workdir, 2000, False), {"nbEpoch": 2})
    outcome = training.train(settings, command=["bench"])
    model, experiment = outcome.model, outcome.experiment
    val = settings.data.get_input_pipeline("", False, settings.training.batch_size, 1)
    logs = json.loads(experiment.run_file.read_text())["last_epoch_logs"]
    best = ours.BestValue("val_loss")
    best.update(1, logs["val_loss"])
    writers = ours.SummaryWriters(workdir / "cost_logs")
    per_call = {
        "EpochScalars (every epoch)": ours.EpochScalars(writers),
        "WeightHistograms (every histogram_freq epochs)": ours.WeightHistograms(writers),
        "TrainingCurves (every epoch)": ours.TrainingCurves(experiment.history_csv, workdir / "curves.png", best,
                                                            title=experiment.name),
        "HParamsLogger (every epoch)": ours.HParamsLogger(writers, settings.experiment.hparams, best, "bench"),
        "ModelGraph (once)": ours.ModelGraph(writers),
        "ProjectorLogger (once, 500 samples)": ours.ProjectorLogger(str(workdir / "cost_logs/validation"), val),
    }
    costs = {}
    for name, callback in per_call.items():
        callback.set_model(model)
        callback.set_params({"epochs": 1000})
        if name.startswith("HParams"):
            callback.on_train_begin()
        times = []
        for repeat in range(repeats):
            if name.startswith("ModelGraph"):
                callback._written = False
            start = time.perf_counter()
            if "once" in name:
                (callback.on_train_begin if name.startswith("ModelGraph") else callback.on_train_end)()
            else:
                callback.on_epoch_end(repeat, dict(logs))
            times.append(time.perf_counter() - start)
        costs[name] = statistics.median(times)
    per_call["TrainingCurves (every epoch)"].on_train_end()  # the last drawing done
    from experiments_manager.callbacks.training_curves import plot_history

    times = []
    for _ in range(5):
        start = time.perf_counter()
        plot_history(experiment.history_csv, workdir / "curves.png", title=experiment.name,
                     best=("val_loss", 2, logs["val_loss"]))
        times.append(time.perf_counter() - start)
    costs["  TrainingCurves: the drawing, in its own thread"] = statistics.median(times)
    return costs


HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_test_begin", "on_test_end",
         "on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin", "on_test_batch_end")


def training_thread_costs(settings, epochs, workdir):
    """(seconds of the run, {callback.hook: seconds on the training thread}) of one engine run in this process:
    what the engine's callbacks cost the training thread (background threads not counted), a measure that a
    busy machine disturbs less than the wall time of whole runs."""
    import collections

    import keras

    costs = collections.defaultdict(float)
    plain_init = keras.callbacks.CallbackList.__init__

    def timed(function, name):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                costs[name] += time.perf_counter() - start
        return call

    def init(self, callbacks=None, *args, **kwargs):
        for callback in callbacks or []:
            for hook in HOOKS:  # the hooks a callback defines (Keras calls the others, no-ops, too)
                if getattr(type(callback), hook, None) is not getattr(keras.callbacks.Callback, hook):
                    setattr(callback, hook, timed(getattr(callback, hook), f"{type(callback).__name__}.{hook}"))
        plain_init(self, callbacks, *args, **kwargs)

    keras.callbacks.CallbackList.__init__ = init
    try:
        os.chdir(workdir)
        seconds = run_engine(settings, epochs)
    finally:
        keras.callbacks.CallbackList.__init__ = plain_init
    return seconds, dict(costs)


def help_wall_time(repeats=10):
    program = Path(sys.executable).with_name("experiments-manager")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([str(program), "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _percent(share):
    return "?" if share is None else f"{share * 100:.0f} %"


def describe(arguments):
    """The workload in words."""
    if arguments.workload == "mlp":
        return f"MLP 3x256, {arguments.samples} samples of 32 features, batch 128"
    return f"regression example, {arguments.samples} samples"


def report(arguments, kinds, epochs, wall, cpu, fsyncs):
    """Prints the medians, the ratios to plain Keras and, per feature switched off, its share of the engine's run."""
    median = {kind: statistics.median(wall[kind]) for kind in kinds}
    median_cpu = {kind: statistics.median(cpu[kind]) for kind in kinds}
    exports = "every epoch" if arguments.every_epoch else "on improvement"
    print(f"train, {describe(arguments)} x {epochs} epochs, export {exports}, {len(wall['engine'])} rounds (medians; "
          f"CPU: the whole process, TensorFlow import included):")
    for kind in kinds:
        print(f"  {kind:26s} {median[kind]:6.2f} s   CPU {median_cpu[kind]:6.2f} s   "
              f"rounds {', '.join(f'{value:.2f}' for value in wall[kind])}")
    target = 1.06 if arguments.every_epoch else 1.03  # issue 47
    print(f"  ratio engine/plain = {median['engine'] / median['plain']:.3f}  (target <= {target:.2f}); "
          f"CPU ratio = {median_cpu['engine'] / median_cpu['plain']:.3f}  (target <= 1.06)")
    if "baseline" in kinds:
        print(f"  ratio baseline/plain = {median['baseline'] / median['plain']:.3f}; CPU ratio = "
              f"{median_cpu['baseline'] / median_cpu['plain']:.3f}  (baseline: {arguments.baseline})")
    paired = [engine / plain for engine, plain in zip(wall["engine"], wall["plain"])]
    print(f"  engine/plain within each round (the two ran next to each other): "
          f"{', '.join(f'{ratio:.3f}' for ratio in paired)}; median {statistics.median(paired):.3f}")
    features = [kind for kind in kinds if kind.startswith("engine-no-")]
    if features:
        print("  what each feature costs (engine - engine-no-<feature>, share of the engine's wall / CPU time):")
        for kind in features:
            print(f"    {kind.removeprefix('engine-no-'):16s} wall {median['engine'] - median[kind]:+6.2f} s "
                  f"({(median['engine'] - median[kind]) / median['engine'] * 100:+5.1f} %)   "
                  f"CPU {median_cpu['engine'] - median_cpu[kind]:+6.2f} s "
                  f"({(median_cpu['engine'] - median_cpu[kind]) / median_cpu['engine'] * 100:+5.1f} %)")
    print(f"  durable commits: {statistics.median(f['count'] for f in fsyncs):.0f} fsyncs a run, "
          f"{statistics.median(f['seconds'] for f in fsyncs):.3f} s (median, every thread)")


def report_phases(kinds, phases):
    """Prints the median seconds of each of `fit`'s phases (`record_phases`) per kind."""
    print("  where fit's time goes (medians, seconds; `--phases`):")
    print("    " + f"{'kind':26s}" + "".join(f"{name:>16s}" for name in PHASES))
    for kind in kinds:
        medians = [statistics.median(run[name] for run in phases[kind]) for name in PHASES]
        print("    " + f"{kind:26s}" + "".join(f"{value:16.2f}" for value in medians))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--samples", type=int, default=None, help="training samples (default: 100000 for the "
                        "regression example, 40000 for the MLP)")
    parser.add_argument("--epochs", type=int, default=None, help="default: 6 (regression), 16 (mlp)")
    parser.add_argument("--workload", choices=("regression", "mlp"), default="regression",
                        help="the regression example (--samples) or issue 47's MLP of 3x256 on 40000 samples")
    parser.add_argument("--every-epoch", action="store_true", help="export every epoch (worst case)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"comma-separated kinds to alternate, from {', '.join(KINDS)} (default: all; "
                             "engine and plain are always run)")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="also alternate the engine (defaults) of another checkout (a git worktree of an "
                             "earlier commit), kind `baseline`")
    parser.add_argument("--max-steal", type=float, metavar="PERCENT",
                        help="leave out (and run again) a round in which a run lost more than PERCENT %% of the "
                             f"machine's CPU time to the hypervisor (/proc/stat's steal), at most "
                             f"{MAX_TRIES_PER_ROUND}x --rounds tries (default: keep every round)")
    parser.add_argument("--phases", action="store_true",
                        help="also time where each kind's `fit` spends its time: training steps, validation, "
                             "epoch ends, end of fit (medians)")
    parser.add_argument("--logging-costs", action="store_true",
                        help="time each TensorBoard/report callback alone instead (milliseconds per call)")
    parser.add_argument("--training-thread", action="store_true",
                        help="one engine run in this process instead: what each callback costs the training thread")
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    epochs = arguments.epochs or (16 if arguments.workload == "mlp" else 6)  # the workload's own by default
    arguments.samples = arguments.samples or (40000 if arguments.workload == "mlp" else 100000)

    if arguments.worker:
        if arguments.phases:
            record_phases()
        if arguments.worker == "plain":
            print(json.dumps({"seconds": run_plain(arguments.settings, arguments.epochs), "phases": PHASES}))
            return
        counted_fsyncs(skip=arguments.worker == "engine-no-fsync")
        feature = arguments.worker.removeprefix("engine-no-")
        if feature in FEATURES and feature not in OFF_IN_SETTINGS:
            switch_off(feature)
        seconds = run_engine(arguments.settings, arguments.epochs)
        print(json.dumps({"seconds": seconds, "fsyncs": FSYNCS, "phases": PHASES}))
        return

    if arguments.logging_costs:
        with tempfile.TemporaryDirectory() as folder:
            costs = logging_costs(Path(folder))
        print("reporting callbacks, regression example (median of 20 calls):")
        for name, seconds in costs.items():
            print(f"  {name:48s} {seconds * 1000:8.1f} ms")
        return

    if arguments.training_thread:
        with tempfile.TemporaryDirectory() as folder:
            settings = bench_settings(Path(folder), arguments.samples, arguments.every_epoch,
                                      workload=arguments.workload)
            seconds, costs = training_thread_costs(settings, epochs, Path(folder))
        exports = "every epoch" if arguments.every_epoch else "on improvement"
        print(f"training-thread time of the engine's callbacks, {describe(arguments)} x {epochs} epochs, export "
              f"{exports} (run: {seconds:.2f} s; total {sum(costs.values()):.3f} s):")
        for name, cost in sorted(costs.items(), key=lambda item: -item[1]):
            if cost >= 0.005:
                print(f"  {name:48s} {cost * 1000:8.1f} ms")
        return

    unknown = set(arguments.kinds.split(",")) - set(KINDS)
    if unknown:
        parser.error(f"--kinds: expected names from {', '.join(KINDS)}, got {', '.join(sorted(unknown))}")
    kinds = [kind for kind in KINDS if kind in arguments.kinds.split(",") or kind in ("engine", "plain")]
    if arguments.baseline:
        kinds.insert(1, "baseline")
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        settings = {kind: bench_settings(workdir, arguments.samples, arguments.every_epoch,
                                         off=kind.removeprefix("engine-no-") if kind.startswith("engine-no-") else None,
                                         workload=arguments.workload) for kind in kinds}  # baseline: the defaults
        wall, cpu, fsyncs = {kind: [] for kind in kinds}, {kind: [] for kind in kinds}, []
        phases = {kind: [] for kind in kinds}
        tries, skipped = 0, []
        while len(wall["engine"]) < arguments.rounds and tries < arguments.rounds * MAX_TRIES_PER_ROUND:
            order = kinds if tries % 2 == 0 else kinds[::-1]  # alternate who goes first
            tries += 1
            measured = {kind: measure(kind, settings[kind], epochs, workdir, arguments.baseline, arguments.phases)
                        for kind in order}
            line = ", ".join(f"{kind} {measured[kind].seconds:.2f} s (steal {_percent(measured[kind].steal)})"
                             for kind in kinds)
            worst = max((run.steal for run in measured.values() if run.steal is not None), default=None)
            if arguments.max_steal is not None and worst is not None and worst * 100 > arguments.max_steal:
                skipped.append(worst)
                print(f"try {tries}, left out (steal above {arguments.max_steal:g} %): {line}", flush=True)
                continue
            for kind in kinds:
                wall[kind].append(measured[kind].seconds)
                cpu[kind].append(measured[kind].cpu)
                phases[kind].append(measured[kind].phases)
            fsyncs.append(measured["engine"].fsyncs)
            print(f"round {len(wall['engine'])} (try {tries}): {line}", flush=True)
    if not wall["engine"]:
        sys.exit(f"bench_train: --max-steal {arguments.max_steal:g}: no round of {tries} had less steal than that")
    if skipped:
        print(f"{len(skipped)} of {tries} tries left out: the hypervisor stole more than {arguments.max_steal:g} % "
              f"of the machine's CPU time while they ran (up to {max(skipped) * 100:.0f} %)")
    report(arguments, kinds, epochs, wall, cpu, fsyncs)
    if arguments.phases:
        report_phases(kinds, phases)
    print(f"experiments-manager --help: median {help_wall_time():.3f} s  (target <= 0.5 s)")


if __name__ == "__main__":
    main()
