"""Benchmark: where a short training run's fixed cost goes, the engine's `train` (every default on) beside plain Keras.

Models (generated data, weights=None, softmax outputs, sparse categorical crossentropy, Adam(1e-3), accuracy,
`nbEpoch = 3`, `random_seed = 1`, every other setting the engine's default: EMA, checkpoints, exports, TensorBoard,
PNG...): `smallcnn` (Conv2D(16) - MaxPool - Conv2D(32) - global pooling - Dense(10) on 32x32x3; 512 train / 256
validation samples, batch 32), `mobilenetv3small`, `resnet50`, `efficientnetb0` (a pooled Dense head on the
`keras.applications` backbone, 32x32x3, 10 classes) and `transformer` (tools/bench_models.py's text classifier), these
four with bench_models' sizes (96 train / 48 validation samples, batch 16).

Kinds, each run in its own process (TensorFlow state never carries over), alternated round by round:

- `engine`: `python -m experiments_manager train -u SETTINGS` (the settings module this tool writes), the real command line.
- `plain`: this file's plain worker: imports TensorFlow and Keras, executes the same settings and model files, builds
  the model, compiles it with the same loss / optimizer / metric, `model.fit(train, validation_data=val, epochs=3,
  verbose=2)` (the engine's verbosity when its output is not a terminal) and `model.export(folder)` (a SavedModel).

Default mode: each process' wall and CPU seconds (getrusage(RUSAGE_CHILDREN) deltas), medians over rounds, the ratio
engine / plain and the difference. Project target: ratio <= 1.15 on these 3-epoch runs, and at most 2 s added.

`--phases`: the same runs in-process and instrumented (one process per model and kind), timestamps of each phase on
the system-wide monotonic clock (the parent's spawn and end included: "interpreter start" is the spawn to the
worker's first line, "process exit" its last line to the parent seeing it end: TensorFlow's teardown). The engine
worker runs the same command line in-process (`runpy`, `--entry cli`; `--entry api` calls
`experiments_manager.training.train(settings_path)` instead). Measured with:

- `TARGETS` below: the engine's functions wrapped (module, attribute, label); a target that does not exist (the code
  under experiments_manager/ is refactored) is listed as "not found" and skipped. A function imported by name into
  another experiments_manager module is replaced there too. Time in no wrapped function shows as "other".
  The target modules are imported up front (in "imports"), so their import time is there, not inside `train`.
- `keras.Model.fit`, wrapped: a first callback marks train begin, each epoch's begin, its first step's end (the next
  step's begin: the trace of the train step included), its validation's begin, its end, and train end: spans
  "fit: setup", "on_train_begin callbacks", per epoch "train steps" / "validation" / "epoch-end callbacks",
  "on_train_end callbacks, end of fit".
- `keras.callbacks.CallbackList`: each callback's own hooks (those its class overrides) timed, summed per class and
  hook within each span (`Class.hook (xN)`); what a hook calls (`Exporter.export #1`, the first version's full
  SavedModel) nests under it.
- Other threads (a version or checkpoint written in the background) are listed apart: they overlap the main thread.

Each row: its wall seconds and the process' CPU seconds over the same span (all threads: TensorFlow's, a background
write's; steadier than wall time on a busy machine), engine, plain, difference. Each value is the median over rounds
(absent in a round: 0); "other" is a row's median minus its shown
children's (rows under `--min-row` seconds on both sides are folded into it; an "other" under 0.01 s is left out,
"~0" where the other kind shows its own), so each level adds up. Rows match the
plain worker's by phase ("settings load" <-> "settings exec", "Trainer.open_session" <-> "data+build+compile", the
spans of `fit`, Keras' own callbacks); a phase without counterpart shows "-" on the other side.

`--tree PATH` (default: this repository) runs the children with `PYTHONPATH=PATH` so that `import experiments_manager`
takes that source tree (an earlier commit's worktree, with this venv's Python), as tools/bench_train.py's
`--baseline` does.

Usage (from the repository root):

    .venv/bin/python tools/bench_fixed_cost.py [--rounds 2] [--models smallcnn,mobilenetv3small,...] [--tree PATH]
    .venv/bin/python tools/bench_fixed_cost.py --phases [--rounds 2] [--models ...] [--tree PATH] [--entry cli|api]
                                               [--min-row 0.05] [--raw runs.json]
    .venv/bin/python tools/bench_fixed_cost.py [--phases] --from-raw runs.json   # the tables again, nothing run
"""

import time

STARTED = time.monotonic()  # the worker's first line (before its imports): the end of "interpreter start"
STARTED_CPU = time.process_time()

import argparse  # noqa: E402 - after the first timestamp
import contextlib  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import bench_models  # noqa: E402 - tools/ is on sys.path
from bench_sweep import command_line, machine_line  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS = ("smallcnn", "mobilenetv3small", "resnet50", "efficientnetb0", "transformer")
KINDS = ("engine", "plain")
EPOCHS = 3
SIZES = {"smallcnn": (512, 256, 32)}  # (train samples, validation samples, batch)
DEFAULT_SIZES = (96, 48, 16)          # tools/bench_models.py's
ROOT = "whole process"

# The engine's functions timed by --phases: (module, attribute (Class.method for a method), label, how). how: "call"
# (the call's time), "numbered" (each call its own row: #1, #2...), "context" (a context manager: the call and its
# __enter__ one row, its __exit__ another). A target that is not there is reported "not found" and skipped.
TARGETS = (
    ("experiments_manager.commands.train", "_reserved_folder", "CLI: folder reserved", "context"),
    ("experiments_manager.commands.train", "_import_training", "CLI: training package (TensorFlow quietly)", "call"),
    ("experiments_manager.settings", "load_settings", "settings load (load_settings)", "call"),
    ("experiments_manager.commands.train", "_report", "CLI: report", "call"),
    ("experiments_manager.training", "train", "train()", "call"),
    ("experiments_manager.training.entry_points", "as_settings", "settings (as_settings)", "call"),
    ("experiments_manager.training.entry_points", "_dry_build", "dry build (_dry_build)", "call"),
    ("experiments_manager.training.prepared_run", "prepare_run", "prepare_run (devices, seed, inputs, checked model)",
     "call"),
    ("experiments_manager.training.dry_build", "checked_training_model",
     "checked_training_model (build, compile, check, the template's save)", "call"),
    ("experiments_manager.distribute.devices", "select_devices", "select_devices", "call"),
    ("experiments_manager.training.model", "build_model", "build_model", "call"),
    ("experiments_manager.training.dry_build", "_check_pipeline", "_check_pipeline (a batch of each pipeline)", "call"),
    ("experiments_manager.export.served_module", "served_module", "served_module", "call"),
    ("experiments_manager.training.dry_build", "_check_served", "_check_served (SavedModel to a temporary folder)",
     "call"),
    ("experiments_manager.training.entry_points", "new_run", "experiment folder (new_run)", "context"),
    ("experiments_manager.run.experiment", "Experiment.create", "Experiment.create", "call"),
    ("experiments_manager.training.trainer", "Trainer.open_session", "Trainer.open_session", "call"),
    ("experiments_manager.training.trainer", "Trainer._strategy", "devices, strategy (Trainer._strategy)", "call"),
    ("experiments_manager.training.inputs", "make_inputs", "make_inputs (input pipelines)", "call"),
    ("experiments_manager.training.compiled_model", "compiled_for_training", "compiled_for_training (build, compile)",
     "call"),
    ("experiments_manager.training.trainer", "Trainer._record_model", "Trainer._record_model", "call"),
    ("experiments_manager.training.callback_plan", "CallbackPlan.__init__", "CallbackPlan (the callbacks made)", "call"),
    ("experiments_manager.training.trainer", "Trainer.fit", "Trainer.fit", "call"),
    ("experiments_manager.export.exporter", "Exporter.export", "Exporter.export", "numbered"),
    ("experiments_manager.export.exporter", "Exporter._save", "Exporter._save (tf.saved_model.save)", "call"),
    ("experiments_manager.export.template", "SavedModelTemplate.read", "SavedModelTemplate.read", "call"),
    ("experiments_manager.export.exporter", "Exporter._write", "Exporter._write (a version written)", "call"),
    ("experiments_manager.export.keras_weights", "write_weights_file", "write_weights_file (the Keras weights)", "call"),
    ("experiments_manager.export.exporter", "check_signatures", "check_signatures (the version read back)", "call"),
    ("experiments_manager.utils.checksums", "write_manifest", "write_manifest (checksums)", "call"),
    ("experiments_manager.callbacks.training_checkpoint", "TrainingCheckpoint._write", "TrainingCheckpoint._write",
     "call"),
    ("experiments_manager.training.training_session", "TrainingSession.close",
     "closing: TrainingSession.close (background writes waited for)", "call"),
    ("experiments_manager.callbacks.training_checkpoint", "TrainingCheckpoint.close", "TrainingCheckpoint.close",
     "call"),
    ("experiments_manager.export.exporter", "Exporter.close", "Exporter.close", "call"),
    ("experiments_manager.training.trainer", "Trainer._finished", "Trainer._finished (the ending recorded)", "call"),
)
# engine label -> the plain worker's phase it is compared with
COUNTERPARTS = {"settings load (load_settings)": "settings exec", "settings (as_settings)": "settings exec",
                "Trainer.open_session": "data+build+compile"}
HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_test_begin", "on_test_end",
         "on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin", "on_test_batch_end")

def write_settings(folder: Path, arch: str) -> Path:
    """`tools/bench_models.py`'s settings and model files of `arch`, for EPOCHS epochs (the small CNN bigger)."""
    samples, test, batch = SIZES.get(arch, DEFAULT_SIZES)
    return bench_models.write_settings(folder, arch, epochs=EPOCHS, samples=samples, test_samples=test, batch=batch)


# --- in the worker: the recorder and what it wraps ---------------------------------------------------------------------

def now() -> tuple:
    """(monotonic seconds, this process' CPU seconds, all threads)."""
    return time.monotonic(), time.process_time()


class Recorder:
    """Events (label, start, end, on the main thread, process CPU seconds at start, at end) on the monotonic clock,
    from wrapped functions and spans."""

    def __init__(self) -> None:
        self.events: list = []
        self.numbers: dict = {}
        self.status: list = []
        self._main = threading.main_thread().ident

    def add(self, label: str, start: tuple, end: tuple) -> None:
        """`start`, `end`: (monotonic, process CPU) pairs, from `now()`."""
        self.events.append((label, start[0], end[0], threading.get_ident() == self._main, start[1], end[1]))

    @contextlib.contextmanager
    def span(self, label: str):
        start = now()
        try:
            yield
        finally:
            self.add(label, start, now())

    def timed(self, function, label: str, numbered: bool = False):
        recorder = self

        def call(*args, **kwargs):
            name = label
            if numbered:
                recorder.numbers[label] = number = recorder.numbers.get(label, 0) + 1
                name = f"{label} #{number}"
            start = now()
            try:
                return function(*args, **kwargs)
            finally:
                recorder.add(name, start, now())
        return call

    def timed_context(self, function, label: str):
        recorder = self

        class Timed:
            def __init__(self, manager, start):
                self.manager, self.start = manager, start

            def __enter__(self):
                try:
                    return self.manager.__enter__()
                finally:
                    recorder.add(f"{label} (enter)", self.start, now())

            def __exit__(self, *exc):
                start = now()
                try:
                    return self.manager.__exit__(*exc)
                finally:
                    recorder.add(f"{label} (exit)", start, now())

        def call(*args, **kwargs):
            return Timed(function(*args, **kwargs), now())
        return call

    def wrap_targets(self, targets=TARGETS) -> None:
        """Wraps each target that exists; records "wrapped" or "not found: why" for each."""
        done: dict = {}  # id(original) -> wrapper: a function named by two targets is wrapped once
        for module_name, attribute, label, how in targets:
            where = f"{module_name}:{attribute}"
            try:
                owner = importlib.import_module(module_name)
                *path, name = attribute.split(".")
                for part in path:
                    owner = getattr(owner, part)
                raw = inspect.getattr_static(owner, name)
            except Exception as error:  # noqa: BLE001 - a refactored target: reported, skipped
                self.status.append((where, f"not found ({type(error).__name__}: {error})"))
                continue
            descriptor = type(raw) if isinstance(raw, (staticmethod, classmethod)) else None
            original = raw.__func__ if descriptor else raw
            if not callable(original):
                self.status.append((where, "not found (not callable)"))
                continue
            if id(original) in done:
                wrapper = done[id(original)]
            elif how == "context":
                wrapper = self.timed_context(original, label)
            else:
                wrapper = self.timed(original, label, numbered=how == "numbered")
            done[id(original)] = wrapper
            setattr(owner, name, descriptor(wrapper) if descriptor else wrapper)
            replaced = 0
            if inspect.ismodule(owner):  # imported by name elsewhere: replaced there too
                for module in list(sys.modules.values()):
                    if getattr(module, "__name__", "").startswith("experiments_manager") and module is not owner:
                        for key, value in list(vars(module).items()):
                            if value is original:
                                setattr(module, key, wrapper)
                                replaced += 1
            self.status.append((where, "wrapped" + (f" (+{replaced} imported copies)" if replaced else "")))

    def wrap_keras(self) -> None:
        """`keras.Model.fit` marks its spans; each CallbackList's callbacks have their own hooks timed."""
        import keras

        recorder, base = self, keras.callbacks.Callback
        plain_fit, plain_init = keras.Model.fit, keras.callbacks.CallbackList.__init__

        class Marks(keras.callbacks.Callback):
            """First in fit's callbacks: when Keras reaches each point (no batch-end hook: Keras' async dispatch
            of batch ends stays as it was)."""

            def __init__(self) -> None:
                super().__init__()
                self.train_begin = self.train_end = None
                self.epochs: list = []

            def on_train_begin(self, logs=None):
                self.train_begin = now()

            def on_epoch_begin(self, epoch, logs=None):
                self.epochs.append({"begin": now()})

            def on_train_batch_begin(self, batch, logs=None):
                if batch == 1 and len(self.epochs) == 1 and "first_step" not in self.epochs[0]:
                    self.epochs[0]["first_step"] = now()

            def on_test_begin(self, logs=None):
                if self.epochs and "test" not in self.epochs[-1]:
                    self.epochs[-1]["test"] = now()

            def on_epoch_end(self, epoch, logs=None):
                self.epochs[-1]["end"] = now()

            def on_train_end(self, logs=None):
                self.train_end = now()

        def fit(model, *args, **kwargs):
            marks = None
            if not isinstance(kwargs.get("callbacks"), keras.callbacks.CallbackList) and len(args) < 5:
                marks = Marks()
                kwargs["callbacks"] = [marks, *(kwargs.get("callbacks") or [])]
            start = now()
            try:
                return plain_fit(model, *args, **kwargs)
            finally:
                end = now()
                recorder.add("fit", start, end)
                if marks is not None:
                    recorder.fit_spans(marks, start, end)

        def init(callback_list, *args, **kwargs):
            plain_init(callback_list, *args, **kwargs)
            for callback in callback_list.callbacks:
                if isinstance(callback, Marks) or getattr(callback, "_bench_timed", False):
                    continue
                for hook in HOOKS:  # the hooks its class defines: Keras' async dispatch sees the same
                    if getattr(type(callback), hook, None) is not getattr(base, hook, None):
                        setattr(callback, hook,
                                recorder.timed(getattr(callback, hook), f"{type(callback).__name__}.{hook}"))
                callback._bench_timed = True

        keras.Model.fit = fit
        keras.callbacks.CallbackList.__init__ = init

    def fit_spans(self, marks, start: tuple, end: tuple) -> None:
        """The spans of one `fit` from its marks."""
        if marks.train_begin is None:
            return
        self.add("fit: setup (adapters, train function, callback list)", start, marks.train_begin)
        first = marks.epochs[0]["begin"] if marks.epochs else marks.train_end or end
        self.add("on_train_begin callbacks", marks.train_begin, first)
        for number, epoch in enumerate(marks.epochs, 1):
            if "end" not in epoch:
                break
            self.add(f"epoch {number}: train steps", epoch["begin"], epoch.get("test", epoch["end"]))
            if "first_step" in epoch:
                self.add("first step (its trace included)", epoch["begin"], epoch["first_step"])
            if "test" in epoch:
                self.add(f"epoch {number}: validation", epoch["test"], epoch["end"])
            after = marks.epochs[number]["begin"] if number < len(marks.epochs) else marks.train_end or end
            self.add(f"epoch {number}: epoch-end callbacks", epoch["end"], after)
        if marks.train_end is not None:
            self.add("on_train_end callbacks, end of fit", marks.train_end, end)


def worker(kind: str, arch: str, folder: Path, phases: bool, entry: str) -> dict:
    """One run of `kind` in this process; returns its events (with `phases`) and its last line's time."""
    os.chdir(folder)  # the settings' relative folders; this process only
    sys.path.insert(0, str(folder))
    recorder = Recorder()
    result: dict = {"started": STARTED, "started_cpu": STARTED_CPU}
    settings_path = folder / "settings_bench.py"
    if kind == "engine":
        with recorder.span("imports"):
            with recorder.span("import experiments_manager"):
                import experiments_manager
            with recorder.span("import tensorflow"):  # as the CLI does: its start-up noise filtered
                try:
                    from experiments_manager.utils.native_noise import import_tensorflow_quietly
                except ImportError:
                    import tensorflow  # noqa: F401
                else:
                    import_tensorflow_quietly()
            with recorder.span("import keras"):
                import keras  # noqa: F401
            if phases:
                with recorder.span("import the wrapped modules"):
                    for module_name in dict.fromkeys(target[0] for target in TARGETS):
                        with contextlib.suppress(Exception):
                            importlib.import_module(module_name)
        result["package"] = experiments_manager.__file__
        if phases:
            with recorder.span("bench instrumentation (not the engine's)"):
                recorder.wrap_targets()
                recorder.wrap_keras()
        if entry == "cli":
            import runpy

            sys.argv = ["experiments_manager", "train", "-u", str(settings_path)]
            with recorder.span("CLI (python -m experiments_manager train -u)"):
                try:
                    runpy.run_module("experiments_manager", run_name="__main__", alter_sys=True)
                except SystemExit as leaving:
                    if leaving.code not in (0, None):
                        raise SystemExit(f"the engine's command line exited with {leaving.code}") from None
        else:
            import experiments_manager.training

            experiments_manager.training.train(str(settings_path))
    else:
        with recorder.span("imports"):
            with recorder.span("import tensorflow"):
                import tensorflow  # noqa: F401
            with recorder.span("import keras"):
                import keras
        if phases:
            with recorder.span("bench instrumentation (not the engine's)"):
                recorder.wrap_keras()
        with recorder.span("settings exec"):
            settings = importlib.import_module("settings_bench")
            model_file = importlib.import_module("model_bench")
        with recorder.span("data+build+compile"):
            keras.utils.set_random_seed(settings.random_seed)  # as the engine seeds
            train = settings.get_input_pipeline("train", True, settings.batch_size, EPOCHS)
            val = settings.get_input_pipeline("val", False, settings.batch_size, EPOCHS)
            model = model_file.model(settings)
            loss = settings.get_total_loss(model)
            model.compile(optimizer=settings.get_optimizer(model, loss, settings.get_learningRate()), loss=loss,
                          metrics=settings.get_metrics(model, loss))
        model.fit(train, validation_data=val, epochs=EPOCHS, verbose=2)
        with recorder.span("export (model.export)"):
            model.export(str(folder / "plain_export"), verbose=False)
    result.update(events=recorder.events, targets=recorder.status)
    result["ended"], result["ended_cpu"] = now()  # the script's last line: the rest is the process' exit
    return result


# --- measuring the runs ------------------------------------------------------------------------------------------------

def measured(kind: str, arch: str, folder: Path, tree: Path, phases: bool, entry: str) -> dict:
    """Runs `kind` on `arch` in a new process; its wall and CPU seconds (and its events with `phases`)."""
    if kind == "engine" and not phases:
        command = [sys.executable, "-m", "experiments_manager", "train", "-u", str(folder / "settings_bench.py")]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, arch, str(folder), entry,
                   *(["--phases"] if phases else [])]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(tree))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env)
    end = time.monotonic()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{kind} {arch} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict = {"wall": end - start,
                    "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}
    if command[1] != "-m":
        report = json.loads((folder / "worker.json").read_text())
        events = report.pop("events", [])
        if phases:
            events += [("interpreter start", start, report["started"], True, 0.0, report["started_cpu"]),
                       ("process exit", report["ended"], end, True, report["ended_cpu"], result["cpu"])]
        result.update(report, events=events, start=start, end=end)
    return result


# --- the phase tables --------------------------------------------------------------------------------------------------

def flat_profile(result: dict) -> dict:
    """{path: [seconds, calls, CPU seconds]} of one run's main-thread events, nested by time containment (pre-order),
    with the other threads' events under ("background", label)."""
    root = {"label": ROOT, "start": result["start"], "end": result["end"], "cpu": result["cpu"], "children": []}
    stack = [root]
    main = sorted((event for event in result["events"] if event[3]), key=lambda event: (event[1], -event[2]))
    for label, start, end, _, cpu_start, cpu_end in main:
        while len(stack) > 1 and end > stack[-1]["end"] + 1e-6:
            stack.pop()
        node = {"label": label, "start": start, "end": end, "cpu": cpu_end - cpu_start, "children": []}
        stack[-1]["children"].append(node)
        stack.append(node)
    flat: dict = {(ROOT,): [root["end"] - root["start"], 1, root["cpu"]]}

    def add(nodes: list, path: tuple) -> None:
        groups: dict = {}
        for node in nodes:
            for child in node["children"]:
                groups.setdefault(child["label"], []).append(child)
        for label, children in groups.items():
            row = flat.setdefault(path + (label,), [0.0, 0, 0.0])
            row[0] += sum(child["end"] - child["start"] for child in children)
            row[1] += len(children)
            row[2] += sum(child["cpu"] for child in children)
            add(children, path + (label,))

    add([root], (ROOT,))
    for label, start, end, on_main, cpu_start, cpu_end in result["events"]:
        if not on_main:
            row = flat.setdefault(("background", label), [0.0, 0, 0.0])
            row[0] += end - start
            row[1] += 1
            row[2] += cpu_end - cpu_start  # the whole process' CPU meanwhile: not this thread's
    return flat


def medians(runs: list) -> dict:
    """{path: (median seconds, median calls, median CPU seconds)} over rounds, in first-seen order (absent in a
    round: 0)."""
    profiles = [flat_profile(run) for run in runs]
    paths = list(dict.fromkeys(path for profile in profiles for path in profile))
    return {path: tuple(statistics.median(profile.get(path, [0.0, 0, 0.0])[field] for profile in profiles)
                        for field in range(3)) for path in paths}


def match_key(path: tuple) -> tuple:
    """What a row is compared by across the kinds."""
    if path[-1] == "other":
        return match_key(path[:-1]) + ("other",)
    if "fit" in path:  # Keras' own spans, the same in both
        return path[path.index("fit"):]
    if path[-1] in COUNTERPARTS:
        return (ROOT, COUNTERPARTS[path[-1]])
    return path


def shown_rows(profile: dict, other_side: dict, min_row: float) -> list:
    """[(path, seconds, calls, CPU seconds)] of the rows shown (pre-order), with an "other" row closing each row that
    has shown children: its seconds minus theirs."""
    other_keys = {match_key(path): value[0] for path, value in other_side.items()}
    children: dict = {}
    for path in profile:
        if path[0] == ROOT and len(path) > 1:
            children.setdefault(path[:-1], []).append(path)
    rows: list = []

    def visit(path: tuple) -> None:
        seconds, calls, cpu = profile[path]
        rows.append((path, seconds, calls, cpu))
        kept = [child for child in children.get(path, [])
                if max(profile[child][0], other_keys.get(match_key(child), 0.0)) >= min_row]
        for child in kept:
            visit(child)
        other = seconds - sum(profile[child][0] for child in kept)
        if kept and abs(other) >= 0.01:  # smaller: "~0" where the other kind shows its own
            rows.append((path + ("other",), other, 0, cpu - sum(profile[child][2] for child in kept)))

    visit((ROOT,))
    return rows


def phase_table(arch: str, engine_runs: list, plain_runs: list, min_row: float) -> list:
    """The markdown lines of one model's phase table."""
    engine, plain = medians(engine_runs), medians(plain_runs)
    engine_rows = shown_rows(engine, plain, min_row)
    plain_rows = shown_rows(plain, engine, min_row)
    engine_index = {match_key(row[0]): index for index, row in enumerate(engine_rows)}
    plain_index = {match_key(row[0]): index for index, row in enumerate(plain_rows)}
    lines = [f"### {arch}", "",
             "| phase | engine (s) | plain (s) | engine - plain (s) | engine CPU (s) | plain CPU (s) | CPU diff (s) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    written: set = set()

    def label(path: tuple, calls: float) -> str:
        times = f" (x{calls:g})" if calls and calls > 1 else ""
        text = f"{path[-1]}{times}"
        return ("· " * (len(path) - 1)) + (f"**{text}**" if len(path) <= 2 else text)

    def missing(path: tuple, side_index: dict) -> str:
        """"~0": an "other" that the other kind's row has under 0.01 s (it shows children of its own); else "-"."""
        parent = match_key(path[:-1])
        if path[-1] == "other" and any(len(key) == len(parent) + 1 and key[:-1] == parent for key in side_index):
            return "~0"
        return "-"

    def line(path: tuple, calls: float, engine_row: "tuple | None", plain_row: "tuple | None") -> str:
        cells = []
        for field in (1, 3):
            mine = f"{engine_row[field]:.2f}" if engine_row else missing(path, engine_index)
            theirs = f"{plain_row[field]:.2f}" if plain_row else missing(path, plain_index)
            difference = (engine_row[field] if engine_row else 0.0) - (plain_row[field] if plain_row else 0.0)
            cells += [mine, theirs, f"{difference:+.2f}"]
        return f"| {label(path, calls)} | " + " | ".join(cells) + " |"

    def plain_only(upto: int) -> None:
        for index in range(upto):
            row = plain_rows[index]
            if index not in written and match_key(row[0]) not in engine_index:
                lines.append(line(row[0], row[2], None, row))
                written.add(index)

    for row in engine_rows:
        index = plain_index.get(match_key(row[0]))
        if index is not None:
            plain_only(index)
            written.add(index)
        lines.append(line(row[0], row[2], row, None if index is None else plain_rows[index]))
    plain_only(len(plain_rows))
    background = [(path, value) for path, value in engine.items() if path[0] == "background" and value[0] >= 0.005]
    if background:
        lines += ["", "Background threads (overlap the main thread's rows above, not in their sums): " + "; ".join(
            f"{path[1]} x{value[1]:g} {value[0]:.2f} s" for path, value in background)]
    return lines


def whole_line(engine_runs: list, plain_runs: list, what: str) -> str:
    wall = [statistics.median(run["wall"] for run in runs) for runs in (engine_runs, plain_runs)]
    cpu = [statistics.median(run["cpu"] for run in runs) for runs in (engine_runs, plain_runs)]
    ratio, added = wall[0] / wall[1], wall[0] - wall[1]
    met = "met" if ratio <= 1.15 and added <= 2.0 else "not met"
    return (f"Whole process ({what}): engine {wall[0]:.1f} s wall / {cpu[0]:.1f} s CPU, plain {wall[1]:.1f} s / "
            f"{cpu[1]:.1f} s: ratio {ratio:.2f} (CPU {cpu[0] / cpu[1]:.2f}), engine - plain {added:+.1f} s wall "
            f"({cpu[0] - cpu[1]:+.1f} s CPU); target (<= 1.15 and <= 2 s) {met}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--phases", action="store_true", help="the per-phase profile (in-process, instrumented)")
    parser.add_argument("--tree", default=str(REPO), help="the experiments_manager source tree (PYTHONPATH)")
    parser.add_argument("--entry", choices=("cli", "api"), default="cli",
                        help="--phases: the engine through its command line in-process, or training.train(path)")
    parser.add_argument("--min-row", type=float, default=0.05, help="--phases: rows under this (s) go to 'other'")
    parser.add_argument("--raw", help="also write the runs' measurements to this JSON file")
    parser.add_argument("--from-raw", metavar="RAW", help="print the tables of a --raw file again; nothing is run")
    parser.add_argument("--worker", nargs=4, metavar=("KIND", "ARCH", "FOLDER", "ENTRY"))
    arguments = parser.parse_args()
    if arguments.worker:
        kind, arch, folder, entry = arguments.worker
        report = worker(kind, arch, Path(folder), arguments.phases, entry)
        (Path(folder) / "worker.json").write_text(json.dumps(report))
        return
    models = arguments.models.split(",")
    tree = Path(arguments.tree).resolve()
    print(f"Command: `{command_line()}`")
    print(f"Machine: {machine_line()}; tree {tree}")
    print()
    results: dict = {}
    if arguments.from_raw:
        for key, runs in json.loads(Path(arguments.from_raw).read_text()).items():
            results[tuple(key.split("|"))] = runs
        models = [arch for arch in models if (arch, "engine") in results]
    base = Path(tempfile.mkdtemp(prefix="bench-fixed-cost-"))
    try:
        for round_number in range(0 if arguments.from_raw else arguments.rounds):
            kinds = KINDS if round_number % 2 == 0 else KINDS[::-1]
            for arch in models:
                for kind in kinds:
                    folder = base / f"{arch}-{kind}-{round_number}"
                    write_settings(folder, arch)
                    result = measured(kind, arch, folder, tree, arguments.phases, arguments.entry)
                    results.setdefault((arch, kind), []).append(result)
                    if result.get("package") and not Path(result["package"]).resolve().is_relative_to(tree):
                        print(f"warning: experiments_manager came from {result['package']}, not {tree}")
                    print(f"round {round_number + 1} {arch:17} {kind:7} process {result['wall']:6.1f} s wall "
                          f"{result['cpu']:6.1f} s CPU  (load {os.getloadavg()[0]:.1f})", flush=True)
                    shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if arguments.raw:
        Path(arguments.raw).write_text(json.dumps({"|".join(key): runs for key, runs in results.items()}))
    print()
    print(f"Machine at the end: {machine_line()}")
    print()
    if arguments.phases:
        statuses = results[(models[0], "engine")][0].get("targets", [])
        missing = [f"{where} {status}" for where, status in statuses if not status.startswith("wrapped")]
        print(f"Targets: {len(statuses) - len(missing)} of {len(statuses)} wrapped"
              + ("; not found (skipped): " + "; ".join(missing) if missing else ""))
        print(f"Engine entry: {arguments.entry}; rows under {arguments.min_row} s (both kinds) are folded into "
              "'other'; medians over rounds.")
        print()
        for arch in models:
            engine_runs, plain_runs = results[(arch, "engine")], results[(arch, "plain")]
            print("\n".join(phase_table(arch, engine_runs, plain_runs, arguments.min_row)))
            print()
            print(whole_line(engine_runs, plain_runs, "these instrumented runs"))
            print()
        return
    print("| model | engine (CLI) wall / CPU (s) | plain wall / CPU (s) | ratio wall / CPU | engine - plain wall (s) |")
    print("|---|---|---|---|---|")
    for arch in models:
        engine, plain = results[(arch, "engine")], results[(arch, "plain")]

        def median(rows: list, key: str) -> float:
            return statistics.median(row[key] for row in rows)

        print(f"| {arch} | {median(engine, 'wall'):.1f} / {median(engine, 'cpu'):.1f} | {median(plain, 'wall'):.1f} / "
              f"{median(plain, 'cpu'):.1f} | {median(engine, 'wall') / median(plain, 'wall'):.2f} / "
              f"{median(engine, 'cpu') / median(plain, 'cpu'):.2f} | "
              f"{median(engine, 'wall') - median(plain, 'wall'):+.1f} |")
    print()
    print("Target: engine / plain <= 1.15 and engine - plain <= 2 s (wall).")


if __name__ == "__main__":
    main()
