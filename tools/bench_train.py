"""Benchmark: the engine's `train` against a plain `model.fit` on the same model, data and EMA optimizer.

Each measurement runs in its own process (so TensorFlow state never carries over),
alternating the kinds, and reports the median wall time of each (and the CPU time
of its process) and the ratios. Timed: from building the input pipelines to the
end of training (the engine's run includes its export, checkpoints, TensorBoard
scalars, weight histograms, graph, HParams, curves and projector).

Kinds: `engine` (the defaults: weight histograms every epoch), `engine-no-histograms`
(`histogram_freq = 0`: what the histograms cost), `engine-no-fsync` (`os.fsync` a no-op in that process: what
the durable commits cost; never a setting of the engine), `plain` (`model.fit`). The engine's rows also report
how many fsyncs it made and the seconds they took (all threads).
Also times `experiments-manager --help`. `--logging-costs` times instead each
TensorBoard / report callback alone on the trained regression model (median of
20 calls each, in this process): what one epoch end (or the end of training) costs.

Usage (from the repository root):

    .venv/bin/python tools/bench_train.py [--rounds 4] [--samples 100000] [--epochs 6] [--every-epoch]
                                          [--kinds engine,plain]
    .venv/bin/python tools/bench_train.py --logging-costs
    .venv/bin/python tools/bench_train.py --training-thread [--every-epoch]

`--training-thread` runs the engine once in this process and prints the time each callback hook took on the
training thread (exports written in the background not counted): on a busy machine, a steadier measure of what
the engine adds than the wall time of whole runs.
"""

import argparse
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


KINDS = ("engine", "engine-no-histograms", "engine-no-fsync", "plain")
FSYNCS = {"count": 0, "seconds": 0.0}  # in an engine worker: every os.fsync, counted and timed


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


def bench_settings(workdir, samples, every_epoch, histogram_freq=1):
    """The regression example with more samples; exports on improvement (the default) or every epoch."""
    if not (workdir / "examples").exists():
        shutil.copytree(REPO / "examples", workdir / "examples")
    path = workdir / f"examples/regression/bench_histograms{histogram_freq}.py"
    path.write_text(
        (REPO / SETTINGS).read_text()
        + f"\nnb_train_samples = {samples}\nsave_only_last_best_model = {not every_epoch}\n"
        + f"early_stopping_patience = 1000\nhistogram_freq = {histogram_freq}\n"
    )
    return path


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


def measure(kind, settings, epochs, workdir):
    """(wall seconds of the timed part, CPU seconds of the whole worker process)."""
    worker = "plain" if kind == "plain" else "engine-no-fsync" if kind == "engine-no-fsync" else "engine"
    command = [sys.executable, __file__, "--worker", worker, "--settings", str(settings), "--epochs", str(epochs)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["seconds"], cpu, report.get("fsyncs")


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--samples", type=int, default=100000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--every-epoch", action="store_true", help="export every epoch (worst case)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"comma-separated kinds to alternate, from {', '.join(KINDS)} (default: all; "
                             "engine and plain are always run)")
    parser.add_argument("--logging-costs", action="store_true",
                        help="time each TensorBoard/report callback alone instead (milliseconds per call)")
    parser.add_argument("--training-thread", action="store_true",
                        help="one engine run in this process instead: what each callback costs the training thread")
    parser.add_argument("--worker", choices=("engine", "engine-no-fsync", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    if arguments.worker:
        if arguments.worker == "plain":
            print(json.dumps({"seconds": run_plain(arguments.settings, arguments.epochs)}))
            return
        counted_fsyncs(skip=arguments.worker == "engine-no-fsync")
        seconds = run_engine(arguments.settings, arguments.epochs)
        print(json.dumps({"seconds": seconds, "fsyncs": FSYNCS}))
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
            settings = bench_settings(Path(folder), arguments.samples, arguments.every_epoch)
            seconds, costs = training_thread_costs(settings, arguments.epochs, Path(folder))
        exports = "every epoch" if arguments.every_epoch else "on improvement"
        print(f"training-thread time of the engine's callbacks, {arguments.samples} samples x {arguments.epochs} "
              f"epochs, export {exports} (run: {seconds:.2f} s; total {sum(costs.values()):.3f} s):")
        for name, cost in sorted(costs.items(), key=lambda item: -item[1]):
            if cost >= 0.005:
                print(f"  {name:48s} {cost * 1000:8.1f} ms")
        return

    unknown = set(arguments.kinds.split(",")) - set(KINDS)
    if unknown:
        parser.error(f"--kinds: expected names from {', '.join(KINDS)}, got {', '.join(sorted(unknown))}")
    kinds = [kind for kind in KINDS if kind in arguments.kinds.split(",") or kind in ("engine", "plain")]
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        settings = {"engine": bench_settings(workdir, arguments.samples, arguments.every_epoch),
                    "engine-no-histograms": bench_settings(workdir, arguments.samples, arguments.every_epoch, 0)}
        settings["plain"] = settings["engine-no-fsync"] = settings["engine"]
        wall, cpu, fsyncs = {kind: [] for kind in kinds}, {kind: [] for kind in kinds}, []
        for round_index in range(arguments.rounds):
            order = kinds if round_index % 2 == 0 else kinds[::-1]  # alternate who goes first
            for kind in order:
                seconds, cpu_seconds, fsynced = measure(kind, settings[kind], arguments.epochs, workdir)
                wall[kind].append(seconds)
                cpu[kind].append(cpu_seconds)
                if kind == "engine":
                    fsyncs.append(fsynced)
            print(f"round {round_index + 1}: " + ", ".join(f"{kind} {wall[kind][-1]:.2f} s" for kind in kinds),
                  flush=True)
    median = {kind: statistics.median(wall[kind]) for kind in kinds}
    exports = "every epoch" if arguments.every_epoch else "on improvement"
    print(f"train, {arguments.samples} samples x {arguments.epochs} epochs, export {exports}, "
          f"{arguments.rounds} rounds (medians; CPU: the whole process, TensorFlow import included):")
    for kind in kinds:
        print(f"  {kind:21s} {median[kind]:6.2f} s   CPU {statistics.median(cpu[kind]):6.2f} s   "
              f"rounds {', '.join(f'{value:.2f}' for value in wall[kind])}")
    target = 1.10 if arguments.every_epoch else 1.03  # issue 20
    print(f"  ratio engine/plain = {median['engine'] / median['plain']:.3f}  (target <= {target:.2f}); "
          f"CPU ratio = {statistics.median(cpu['engine']) / statistics.median(cpu['plain']):.3f}")
    paired = [engine / plain for engine, plain in zip(wall["engine"], wall["plain"])]
    print(f"  engine/plain within each round (the two ran next to each other): "
          f"{', '.join(f'{ratio:.3f}' for ratio in paired)}; median {statistics.median(paired):.3f}")
    if "engine-no-histograms" in kinds:
        print(f"  weight histograms: engine/engine-no-histograms = "
              f"{median['engine'] / median['engine-no-histograms']:.3f}")
    print(f"  durable commits: {statistics.median(f['count'] for f in fsyncs):.0f} fsyncs a run, "
          f"{statistics.median(f['seconds'] for f in fsyncs):.3f} s (median, every thread)")
    if "engine-no-fsync" in kinds:
        print(f"  engine/engine-no-fsync = {median['engine'] / median['engine-no-fsync']:.3f}")
    print(f"experiments-manager --help: median {help_wall_time():.3f} s  (target <= 0.5 s)")


if __name__ == "__main__":
    main()
