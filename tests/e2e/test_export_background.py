"""Exports written in the background (issue 20): the EMA values of the epoch that asked, on disk within 2 s,
training going on meanwhile, nothing half-written after a kill, a failure failing the run (or logged, when a signal
stopped it), and a version written from the first one's graph serving what the live model computes."""

import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import cli_env, read_run, settings_variant, wait_for

WORKING_FOLDER = "experiments/examples/curve_fitting"
X = np.linspace(-2, 2, 41, dtype=np.float32).reshape(-1, 1)
SLOW_WRITE = 1.0  # seconds a slowed-down background write takes


def every_epoch_settings(workdir, name="background.py", samples=4000):
    return settings_variant(workdir, name, [f"nb_train_samples = {samples}", "save_only_last_best_model = False",
                                            "export_versions_to_keep = 100", "early_stopping_patience = 50"])


def open_trainer(settings_path, epochs):
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings import load_settings
    from experiments_manager.training import Trainer

    settings = load_settings(settings_path, {"nbEpoch": epochs})
    return Trainer(Experiment.create(settings, ["test"]), settings)


def slowed_write(monkeypatch, seconds=SLOW_WRITE, spans=None, only=None, until=None):
    """Makes template writes (the background part of an export: every version but the run's first, a full save)
    take `seconds` more, half of it after the variables are written: every one, or the `only`-th (1 = the run's
    second version); records (start, end, thread name) of each write slowed in `spans`. With `until` (a function
    of the write's start time), a slowed write also goes on until `until(start)` is true (deadline 60 s)."""
    from experiments_manager.export.template import SavedModelTemplate

    original, calls = SavedModelTemplate.write, []

    def write(self, folder, values):
        calls.append(folder)
        if only is not None and len(calls) != only:
            return original(self, folder, values)
        start = time.monotonic()
        time.sleep(seconds / 2)
        original(self, folder, values)
        time.sleep(seconds / 2)
        deadline = start + 60
        while until is not None and not until(start) and time.monotonic() < deadline:
            time.sleep(0.01)
        if spans is not None:
            spans.append((start, time.monotonic(), threading.current_thread().name))

    monkeypatch.setattr(SavedModelTemplate, "write", write)


def ema_recorder():
    """A callback recording, at each epoch end, the EMA model's predictions on X and when the epoch ended, and the
    time of each training step."""
    import keras

    from experiments_manager.export import ema_weights_swapped_in

    class EmaRecorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.predictions, self.ended, self.batches = {}, {}, []

        def on_train_batch_end(self, batch, logs=None):
            self.batches.append(time.monotonic())

        def on_epoch_end(self, epoch, logs=None):
            self.ended[epoch + 1] = time.monotonic()
            with ema_weights_swapped_in(self.model, self.model.optimizer):
                self.predictions[epoch + 1] = np.asarray(self.model(X, training=False))

    return EmaRecorder()


def served_predictions(version_dir):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(version_dir))
    return loaded.signatures["serving_default"](input=tf.constant(X))["prediction"].numpy()


@pytest.mark.claim(
    "a run's first version is a full save of the live model on the training thread; later versions are written in "
    "a background thread, each holding exactly its epoch's EMA weights, on disk within about 2 s",
    note='(writes slowed 0.5 s while training moves on; `tf.saved_model.load`, rtol 1e-6; polled every 5 ms)')
def test_each_version_holds_the_ema_weights_of_its_epoch_and_shows_within_2_s(workdir, monkeypatch):
    """Every epoch exports; the background writes are slowed (1 s) so training moves the weights on meanwhile.
    Each version, loaded as a server loads it, predicts exactly as the EMA model did at the end of the epoch that
    asked for it (not a later one), and its folder showed within 2 s of that epoch's end."""
    slowed_write(monkeypatch, seconds=0.5)
    trainer = open_trainer(every_epoch_settings(workdir), 4)
    seen, stop = {}, threading.Event()
    base = Path(trainer.experiment.export_dir)

    def watch():
        while not stop.is_set():
            for path in base.iterdir() if base.is_dir() else ():
                if path.name.isdigit():
                    seen.setdefault(int(path.name), time.monotonic())
            stop.wait(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    recorder = ema_recorder()
    session = trainer.open_session()
    with contextlib.closing(session):
        history, stopped = trainer.fit(session, 4, extra_callbacks=[recorder])
    stop.set()
    watcher.join()
    assert stopped is None
    assert read_run(trainer.experiment.root)["exported_versions"] == [1, 2, 3, 4]
    for epoch in range(1, 5):
        np.testing.assert_allclose(served_predictions(base / str(epoch)), recorder.predictions[epoch], rtol=1e-6,
                                   atol=1e-7, err_msg=f"version {epoch} is not the EMA model of epoch {epoch}")
        # the export is asked for before the recorder runs: a version can show before the recorder's time
        assert seen[epoch] - recorder.ended[epoch] <= 2.0, f"version {epoch} showed late"
    # the check is able to tell: the EMA model moved between epochs
    assert np.max(np.abs(recorder.predictions[4] - recorder.predictions[3])) > 1e-4


@pytest.mark.claim(
    "a run's first version is a full save of the live model on the training thread; later versions are written in "
    "a background thread, each holding exactly its epoch's EMA weights, on disk within about 2 s",
    note='(the one full save: on the training thread)')
@pytest.mark.claim(
    'training goes on while a version is written',
    note='(the epoch end returns in < 25 % of a 1 s write; the write waits for 5 steps to run during it)')
def test_training_goes_on_while_a_version_is_written(workdir, monkeypatch):
    """Version 1, the run's one full SavedModel save, is written on the training thread at the end of epoch 1;
    version 2's write, slowed to 1 s, runs in the background thread: the epoch end that asks for it returns in a
    fraction of that, and training steps run while it is written (the training thread is not blocked for the
    export's duration)."""
    from experiments_manager.callbacks import ExportOnImprovement
    from experiments_manager.export import Exporter

    spans, epoch_end, whole = [], {}, []
    recorder = ema_recorder()
    # the write goes on until 5 steps ran after it began: a training thread blocked by the export never gets there
    # (the write then ends at its 60-s deadline with no step during it), however slow the machine
    slowed_write(monkeypatch, SLOW_WRITE, spans, only=1,
                 until=lambda start: sum(moment > start for moment in recorder.batches) >= 5)
    save_live = Exporter._save_live

    def timed_save(self, module, folder):
        start = time.monotonic()
        save_live(self, module, folder)
        whole.append((start, time.monotonic(), threading.current_thread().name))

    monkeypatch.setattr(Exporter, "_save_live", timed_save)
    original = ExportOnImprovement.on_epoch_end

    def timed(self, epoch, logs=None):
        start = time.monotonic()
        original(self, epoch, logs)
        epoch_end[epoch + 1] = time.monotonic() - start

    monkeypatch.setattr(ExportOnImprovement, "on_epoch_end", timed)
    trainer = open_trainer(every_epoch_settings(workdir, samples=16000), 3)
    session = trainer.open_session()
    with contextlib.closing(session):
        trainer.fit(session, 3, extra_callbacks=[recorder])
    assert [name for *_, name in whole] == [threading.current_thread().name]  # once, on the training thread
    assert whole[0][0] < recorder.ended[1]  # at the end of epoch 1 (before the recorder's turn)
    assert len(spans) == 1 and spans[0][2] == "export" and spans[0][1] - spans[0][0] >= SLOW_WRITE
    assert epoch_end[2] < 0.25 * SLOW_WRITE, f"the epoch end took {epoch_end[2]:.3f} s for a {SLOW_WRITE} s export"
    start, end, _ = spans[0]
    during = [moment for moment in recorder.batches if start < moment < end]
    assert len(during) >= 5, f"{len(during)} training steps while version 2 was written"
    assert read_run(trainer.experiment.root)["exported_versions"] == [1, 2, 3]


@pytest.mark.claim('a failed export fails the run with `the export of version N (after epoch E) failed: ...`')
def test_a_failing_background_export_fails_the_run_with_its_message(workdir, monkeypatch):
    from experiments_manager.export.template import SavedModelTemplate
    from experiments_manager.export.background_export import ExportFailed

    original, calls = SavedModelTemplate.write, []

    def broken(self, folder, values):  # version 2 (the first one written from the template) fails
        calls.append(folder)
        if len(calls) != 1:
            return original(self, folder, values)
        (Path(folder) / "variables").mkdir(parents=True)  # something written, then the failure
        raise OSError("the variables could not be written (test)")  # not the machine's failure: that is a 75

    monkeypatch.setattr(SavedModelTemplate, "write", broken)
    trainer = open_trainer(every_epoch_settings(workdir), 3)
    with pytest.raises(ExportFailed, match=r"the export of version 2 \(after epoch 2\) failed: OSError: the var"):
        trainer.run()
    info = read_run(trainer.experiment.root)
    assert info["status"] == "failed"
    assert "the export of version 2 (after epoch 2) failed: OSError: the variables could not be written (test)" \
        in info["error"]
    assert sorted(path.name for path in Path(trainer.experiment.export_dir).iterdir()) == ["1"]  # nothing half done
    assert info["exported_versions"] == [1]


DRIVER = """
import sys, time
from experiments_manager.export.template import SavedModelTemplate
original = SavedModelTemplate.write
def write(self, folder, values):
    original(self, folder, values)
    time.sleep({delay})  # the version's files are there, not yet renamed: the kill comes now
SavedModelTemplate.write = write
from experiments_manager.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.claim(
    'a signal stop checkpoints and marks the run interrupted first, then waits for the version being written and '
    'logs its failure; exit 128+signal; the resume exports it again',
    note='(the re-export)')
@pytest.mark.claim(
    'a kill during an export leaves no version folder half-written; the resume re-exports the lost version')
def test_a_kill_during_a_background_export_leaves_no_version_and_the_resume_exports_it(workdir, run_cli):
    """SIGKILL while version 2 is written in the background (after epoch 2's checkpoint): no `exported_models/2`
    was ever seen incomplete, none is left; the resume removes the dead writer's folder, exports version 2 again
    from the checkpoint of epoch 2, and finishes with every version listed in run.json on disk."""
    settings = every_epoch_settings(workdir, "killed.py")
    driver = workdir / "slow_export_driver.py"
    driver.write_text(DRIVER.format(delay=30))
    process = subprocess.Popen([sys.executable, str(driver), "train", "-u", str(settings), "--hparam", "nbEpoch=3"],
                               cwd=workdir, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        root = wait_for(lambda: next(iter((workdir / WORKING_FOLDER).glob("*/run.json")), None), 120, "the run")
        root = root.parent
        tmp = re.compile(rf"^\.tmp-2-{process.pid}$")
        exports, incomplete = root / "exported_models", []

        def caught():
            for path in exports.iterdir() if exports.is_dir() else ():
                if path.name.isdigit() and not (path / "variables/variables.index").is_file():
                    incomplete.append(path.name)
            return any(tmp.match(path.name) for path in exports.iterdir()) if exports.is_dir() else False

        wait_for(caught, 120, "version 2 being written", interval=0.01)
        wait_for(lambda: (root / "checkpoints").is_dir() and any(
            (path / "state.json").is_file() and '"epochs_completed": 2' in (path / "state.json").read_text()
            for path in (root / "checkpoints").glob("ckpt-*")), 30, "the checkpoint of epoch 2", interval=0.01)
        time.sleep(0.2)
        assert process.poll() is None, process.stdout.read()
        process.kill()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    names = sorted(path.name for path in exports.iterdir())
    assert names == sorted(["1", f".tmp-2-{process.pid}"]) and incomplete == []
    assert read_run(root)["exported_versions"] == [1]
    result = run_cli("train", "--resume", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Exporting again version 2 (after epoch 2)" in result.stdout + result.stderr
    info = read_run(root)
    assert info["status"] == "finished" and info["exported_versions"] == [1, 2, 3]
    assert sorted(path.name for path in exports.iterdir()) == ["1", "2", "3"]
    for version in info["exported_versions"]:
        assert (exports / str(version) / "saved_model.pb").is_file()
        served_predictions(exports / str(version))  # each loads and answers


@pytest.mark.claim(
    "later versions reuse the first one's graph and write only the variables, identical to a full save",
    note='(random, distinct values: keys, shapes, values, object graph, files, predictions, a new fingerprint)')
def test_later_versions_are_what_a_full_save_writes(tmp_path):
    """A version written from the template has the keys, shapes, dtypes, values and object graph of a full
    `tf.saved_model.save` of the same (random, all distinct) values, the same files, and loads to the same
    predictions."""
    import keras
    import tensorflow as tf

    from experiments_manager.export.served_module import default_served_module
    from experiments_manager.export.template import OBJECT_GRAPH_KEY, SavedModelTemplate

    inputs = keras.Input(shape=(1,), name="input")
    hidden = keras.layers.BatchNormalization()(keras.layers.Dense(8, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, name="prediction")(hidden))
    model.compile(optimizer=keras.optimizers.Adam(use_ema=True), loss="mse")
    model.fit(X, X**2, epochs=2, verbose=0)
    module = default_served_module(model, "m")
    signatures = {"serving_default": module.served_model.get_concrete_function()}
    tf.saved_model.save(module, str(tmp_path / "first"), signatures=signatures)
    template = SavedModelTemplate.read(tmp_path / "first", module)
    assert template is not None
    model.fit(X, X**2, epochs=1, verbose=0)  # new values
    rng = np.random.default_rng(0)  # and each its own: a mix-up of two keys cannot hide behind equal values
    for variable in template.objects.variables.values():
        variable.assign(rng.uniform(0.5, 1.5, size=variable.shape).astype(variable.dtype))
    template.write(tmp_path / "later", template.snapshot())
    tf.saved_model.save(module, str(tmp_path / "full"), signatures=signatures)
    later, full = (tf.train.load_checkpoint(str(tmp_path / name / "variables/variables")) for name in ("later", "full"))
    assert later.get_variable_to_shape_map() == full.get_variable_to_shape_map()
    assert later.get_variable_to_dtype_map() == full.get_variable_to_dtype_map()
    for key in full.get_variable_to_shape_map():
        if key != OBJECT_GRAPH_KEY:
            np.testing.assert_array_equal(later.get_tensor(key), full.get_tensor(key), err_msg=key)
    assert later.get_tensor(OBJECT_GRAPH_KEY) == template.object_graph
    first, again = (tf.saved_model.load(str(tmp_path / name)) for name in ("later", "full"))
    np.testing.assert_array_equal(first.signatures["serving_default"](input=tf.constant(X))["output_0"].numpy(),
                                  again.signatures["serving_default"](input=tf.constant(X))["output_0"].numpy())
    assert sorted(os.listdir(tmp_path / "later")) == sorted(os.listdir(tmp_path / "full"))
    assert tf.saved_model.experimental.read_fingerprint(str(tmp_path / "later")).checkpoint_hash != \
        tf.saved_model.experimental.read_fingerprint(str(tmp_path / "first")).checkpoint_hash


@pytest.mark.claim(
    'a signal stop checkpoints and marks the run interrupted first, then waits for the version being written and '
    'logs its failure; exit 128+signal; the resume exports it again',
    note='(SIGTERM; the checkpoint records the version)')
def test_a_stop_signal_checkpoints_and_marks_interrupted_before_waiting_for_the_write(workdir, monkeypatch, caplog):
    """SIGTERM (a Slurm requeue) while version 2 is written in the background: the checkpoint (recording version 2
    as asked for, so a resume exports it again) and the `interrupted` status are on disk before the stop waits
    for the write; the write then fails, and that is logged, not raised: the run stays interrupted, exit 143."""
    import keras

    from experiments_manager.run.checkpointing import Checkpointer
    from experiments_manager.export.template import SavedModelTemplate

    trainer = open_trainer(every_epoch_settings(workdir), 4)
    root, seen = trainer.experiment.root, {}

    def broken(self, folder, values):  # version 2: waits for the stop's bookkeeping (10 s at most), then fails
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and read_run(root).get("status") != "interrupted":
            time.sleep(0.02)
        seen["status"] = read_run(root).get("status")
        seen["state"] = Checkpointer(trainer.experiment.checkpoints_dir).latest_state()
        raise OSError("the variables could not be written (test)")  # not the machine's failure: that is a 75

    monkeypatch.setattr(SavedModelTemplate, "write", broken)
    session = trainer.open_session()

    class SigtermAfterEpoch2(keras.callbacks.Callback):  # what StopOnSignal's handler does on SIGTERM
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == 2:
                session.plan.stop_on_signal.received = signal.SIGTERM

    with contextlib.closing(session):
        history, stopped = trainer.fit(session, 4, extra_callbacks=[SigtermAfterEpoch2()])
    assert history is None and stopped.status == "interrupted" and stopped.exit_code == 128 + signal.SIGTERM
    assert seen["status"] == "interrupted", "the stop waited for the write before marking the run interrupted"
    assert seen["state"]["epochs_completed"] == 2
    requested = seen["state"]["callbacks"]["exports"]["requested"]
    assert (requested["version"], requested["epochs_completed"]) == (2, 2), requested
    info = read_run(root)
    assert info["status"] == "interrupted" and info["exit_code"] == 143 and info["exported_versions"] == [1]
    assert "the export of version 2 (after epoch 2) failed: OSError: the variables could not be written (test)" in caplog.text
    assert sorted(path.name for path in Path(trainer.experiment.export_dir).iterdir()) == ["1"]


@pytest.mark.claim(
    "`get_served_module` is called on the training thread with the training model; a bug in it is the settings' "
    'one-line error')
def test_an_error_in_get_served_module_is_the_settings_one_line_error(workdir):
    """The served module is built from the live model on the training thread, as before issue 20: a bug in the
    settings' `get_served_module` fails the run with the one-line error naming it, not with an export failure."""
    from experiments_manager.utils.errors import UserInputError

    settings = settings_variant(workdir, "served_bug.py", [
        "nb_train_samples = 500", "save_only_last_best_model = False",
        "def get_served_module(model, model_name):",
        "    return model.class_names  # the settings' bug: the model has no such attribute"])
    trainer = open_trainer(settings, 1)
    with pytest.raises(UserInputError, match=r"served_bug\.py: get_served_module \(line \d+\): raised "
                                             r"AttributeError: .*class_names"):
        trainer.run()
    info = read_run(trainer.experiment.root)
    assert info["status"] == "failed" and info["error"].startswith("served_bug.py: get_served_module (line ")


class FakeExperiment:
    """What an `Exporter` reads and writes of an experiment."""

    def __init__(self, root):
        self.export_dir = root / "exported_models"
        self.models_config = root / "models.config"
        self.info = {}
        self.lease = None  # no lease: leftovers are judged by their pid

    def check_writer(self):
        pass

    def run_info(self):
        return dict(self.info)

    @property
    def record(self):
        fake = self

        class Record:
            def versions(self, progress):
                fake.info.update(progress)

        return Record()


def exporter_of(tmp_path, model, get_served_module=None):
    import types

    from experiments_manager.export import Exporter

    settings = types.SimpleNamespace(model_name="m", path=Path("settings.py"), export=types.SimpleNamespace(
        get_served_module=get_served_module, versions_to_keep=10), training=types.SimpleNamespace(monitor="val_loss"),
        data=types.SimpleNamespace(class_names=None))
    return Exporter(FakeExperiment(tmp_path), settings, model, in_background=True)


def normalization_case():
    """An adapted Normalization layer: its statistics are not trained, nor in the layer's config."""
    import keras

    x = np.random.default_rng(0).normal(5, 3, size=(64, 1)).astype(np.float32)
    norm = keras.layers.Normalization()
    norm.adapt(x)
    inputs = keras.Input(shape=(1,), name="input")
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(8, activation="tanh")(norm(inputs))))
    return model, x, x**2, None, None


def lookup_case():
    """An adapted StringLookup in front of an Embedding: a lookup table in the served graph."""
    import keras
    import tensorflow as tf

    words = np.array([["cat"], ["dog"], ["bird"], ["cat"], ["fish"], ["emu"]] * 4)
    lookup = keras.layers.StringLookup()
    lookup.adapt(words)
    inputs = keras.Input(shape=(1,), dtype="string", name="input")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(lookup.vocabulary_size(), 4)(lookup(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(1)(embedded))
    return model, tf.constant(words), np.arange(len(words), dtype=np.float32) % 5, None, None


def custom_state_case():
    """A custom layer whose config omits its factor, with a non-trainable state variable something other than
    the optimizer changes between epochs (exported with its value at the epoch's end, as a full save would)."""
    import keras

    class ScaleShift(keras.layers.Layer):
        def __init__(self, factor=1.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def get_config(self):
            return super().get_config()  # the factor forgotten: a copy of the model from its config has 1.0

        def build(self, input_shape):
            self.offset = self.add_weight(shape=(), initializer="zeros", trainable=False, name="offset")

        def call(self, x):
            return x * self.factor + self.offset

    x = np.linspace(-2, 2, 64, dtype=np.float32).reshape(-1, 1)
    inputs = keras.Input(shape=(1,), name="input")
    layer = ScaleShift(10.0)
    model = keras.Model(inputs, layer(keras.layers.Dense(1)(keras.layers.Dense(8, activation="tanh")(inputs))))
    return model, x, 10 * x**2, None, lambda: layer.offset.assign_add(0.25)


def settings_attribute_case():
    """A `get_served_module` reading an attribute the settings attached to the model (`model.class_names`)."""
    import keras
    import tensorflow as tf

    def get_served_module(model, model_name):
        class Served(tf.Module):
            def __init__(self):
                super().__init__()
                self.model = model
                self.labels = tf.constant(model.class_names)

            @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="input")])
            def served_model(self, input):
                prediction = self.model(input, training=False)
                return {"output_0": prediction, "label": tf.gather(self.labels, tf.cast(prediction[:, 0] > 1, tf.int32))}

        return Served()

    x = np.linspace(-2, 2, 64, dtype=np.float32).reshape(-1, 1)
    inputs = keras.Input(shape=(1,), name="input")
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(8, activation="tanh")(inputs)))
    model.class_names = ["low", "high"]
    return model, x, x**2, get_served_module, None


def mixed_precision_case():
    """mixed_float16, the policy set while the model is built only (as `precision_policy` does), with a composite
    custom layer (its inner layer takes the policy in force when it is made): the versions have the live model's
    float16 graph."""
    import keras

    class Block(keras.layers.Layer):
        def __init__(self, units=8, **kwargs):
            super().__init__(**kwargs)
            self.inner = keras.layers.Dense(units, activation="tanh")

        def call(self, x):
            return self.inner(x)

    x = np.linspace(-2, 2, 64, dtype=np.float32).reshape(-1, 1)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        inputs = keras.Input(shape=(1,), name="input")
        hidden = keras.layers.Dense(64)(Block(64)(inputs))
        model = keras.Model(inputs, keras.layers.Dense(1, dtype="float32")(hidden))
    finally:
        keras.config.set_dtype_policy("float32")
    return model, x, x**2, None, None


def mutable_table_case():
    """A custom layer adding a value it looks up in a `MutableHashTable` that something other than the optimizer
    changes between epochs: each version holds the table's contents at the epoch's end (its keys and values
    snapshot with the weights), as a full save would."""
    import keras
    import tensorflow as tf

    from table_layers import TableShift

    x = np.linspace(-2, 2, 64, dtype=np.float32).reshape(-1, 1)
    inputs = keras.Input(shape=(1,), name="input")
    layer = TableShift()
    model = keras.Model(inputs, layer(keras.layers.Dense(1)(keras.layers.Dense(8, activation="tanh")(inputs))))
    shifts = iter(np.arange(1, 10, dtype=np.float32) * 0.5)
    return model, x, x**2, None, lambda: layer.table.insert(tf.constant(["shift"]), tf.constant([next(shifts)]))


CASES = {"normalization": normalization_case, "string_lookup": lookup_case, "custom_state": custom_state_case,
         "settings_attribute": settings_attribute_case, "mixed_precision": mixed_precision_case,
         "mutable_table": mutable_table_case}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.claim(
    "each version holds exactly its epoch's values: adapted layers, state outside a layer's config, "
    'settings-attached model attributes, mixed precision',
    note='(adapted Normalization, adapted StringLookup, a custom layer whose config omits its factor and whose '
         'state variable changes between epochs, `get_served_module` reading `model.class_names`, mixed_float16 '
         'with a composite layer; version 2 loaded, rtol 1e-6 against the live EMA model)')
@pytest.mark.claim(
    "a served module holding a mutable lookup table has its later versions written from the template too, the "
    "table's contents snapshot with the weights",
    note="(cases `string_lookup`: its adapt counts, an empty MutableHashTable; `mutable_table`: a table whose value "
         "changes between epochs, version 2 holding the value it had when asked for)")
def test_a_later_version_serves_what_the_live_model_computes(case, tmp_path):
    """Version 1 is a full save of the live model; version 2, asked for after one more epoch, is written from the
    template in the background while training moves the weights on. Loaded as a server loads it, version 2
    answers exactly what the live model, its EMA weights in, computed when it was asked for."""
    import keras
    import tensorflow as tf

    from experiments_manager.export import ema_weights_swapped_in

    model, x, y, get_served_module, change_state = CASES[case]()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.05, use_ema=True), loss="mse")
    exporter = exporter_of(tmp_path, model, get_served_module)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert exporter.export(epochs_completed=1) == 1
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    if change_state:
        change_state()
    with ema_weights_swapped_in(model, model.optimizer):
        # traced, as the SavedModel is: eager and graph kernels differ in the last bits on some CPUs (oneDNN with
        # AVX512-FP16 / AMX, in mixed precision)
        expected = np.asarray(tf.function(lambda inputs: model(inputs, training=False))(x))
    assert exporter.export(epochs_completed=2) == 2
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # while version 2 is written
    if change_state:
        change_state()
    exporter.finish()
    assert exporter._template, "version 2 was not written from the template"
    served = {version: tf.saved_model.load(str(tmp_path / "exported_models" / str(version))).signatures[
        "serving_default"](input=tf.constant(x)) for version in (1, 2)}
    np.testing.assert_allclose(served[2]["output_0"].numpy(), expected, rtol=1e-6, atol=1e-6)
    assert np.max(np.abs(served[1]["output_0"].numpy() - expected)) > 1e-3  # the check can tell the versions apart
    if case == "settings_attribute":
        labels = np.where(expected[:, 0] > 1, b"high", b"low")
        np.testing.assert_array_equal(served[2]["label"].numpy(), labels)


def test_export_missing_is_on_disk_when_it_returns(tmp_path):
    """The version a resume exports again is written before training starts (a full save, on this thread):
    nothing is left in flight should the rest of the session's opening fail."""
    import keras

    inputs = keras.Input(shape=(1,), name="input")
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(use_ema=True), loss="mse")
    model.fit(X, X**2, epochs=1, verbose=0)
    exporter = exporter_of(tmp_path, model)
    exporter.set_state({"requested": {"version": 3, "epochs_completed": 5}})
    exporter.experiment.info["last_exported_version"] = 2
    assert exporter.export_missing(4) is None  # another epoch's checkpoint
    assert exporter.export_missing(5) == 3
    assert exporter._worker._thread is None and exporter.versions() == [3]
    assert exporter.export_missing(5) is None  # on disk now



def test_a_version_the_retention_removed_before_an_epoch_listed_it_keeps_its_record(tmp_path):
    """A background write finishing after its epoch's end was listed, and removed by the next version's retention
    before the next epoch's end: run.json still says which epoch it held (its record is kept for removed versions)."""
    import keras

    inputs = keras.Input(shape=(1,), name="input")
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(use_ema=True), loss="mse")
    model.fit(X, X**2, epochs=1, verbose=0)
    exporter = exporter_of(tmp_path, model)
    exporter.settings.export.versions_to_keep = 1
    exporter.export(1, value=0.5, best=True)
    exporter.export(2, value=0.7)
    exporter.export(3, value=0.9)  # removes version 2, which no epoch's end saw on disk
    exporter.finish()
    info = exporter.experiment.info
    assert info["exported_versions"] == [1, 3]
    assert {version: record["epoch"] for version, record in info["version_records"].items()} == {
        "1": 1, "2": 2, "3": 3}

def original_style_module(model, model_name, reads_the_optimizer=False):
    """A served module as the original framework's settings write it: it holds the model (and so its optimizer).
    With `reads_the_optimizer`, its function also answers the optimizer's iteration count."""
    import tensorflow as tf

    class ExportedModule(tf.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec(shape=[None, 1], dtype=tf.float32, name="input")])
        def served_model(self, input):
            outputs = {"output_0": self.model(input, training=False)}
            if reads_the_optimizer:
                outputs["steps"] = tf.fill(tf.shape(input)[:1], tf.cast(self.model.optimizer.iterations, tf.int64))
            return outputs

    return ExportedModule(model)


@pytest.mark.parametrize("served", ["default", "original_style", "reads_the_optimizer"])
@pytest.mark.claim(
    "a version holds the model's weights, not the optimizer's (default served module or one holding `self.model`), "
    'first and later versions alike; a served function reading the optimizer gets it saved (logged)',
    note="(Adam with EMA: checkpoint shapes == the model's weights; serves the live EMA model, rtol 1e-6; 3 served "
         'modules)')
def test_a_version_holds_the_models_weights_and_not_the_optimizers(tmp_path, served, caplog):
    """Adam with EMA keeps three values per weight besides it (two moments, the average): a version saves the
    model's weights only, with the default served module or one holding the model as the original framework's
    settings do, the first (full) and the later (template) versions alike, and it still serves what the live model
    computes with its EMA weights. A served function that reads the optimizer gets it saved too (logged)."""
    import keras
    import tensorflow as tf

    from experiments_manager.export import ema_weights_swapped_in
    from experiments_manager.export.template import OBJECT_GRAPH_KEY

    inputs = keras.Input(shape=(1,), name="input")
    hidden = keras.layers.BatchNormalization()(keras.layers.Dense(64, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    model.compile(optimizer=keras.optimizers.Adam(use_ema=True), loss="mse")
    modules = {"default": None, "original_style": original_style_module,
               "reads_the_optimizer": functools.partial(original_style_module, reads_the_optimizer=True)}
    exporter = exporter_of(tmp_path, model, modules[served])
    with caplog.at_level("INFO", logger="experiments_manager"):
        for version in (1, 2):
            model.fit(X, X**2, epochs=1, verbose=0)
            assert exporter.export(epochs_completed=version) == version
        exporter.finish()
    with ema_weights_swapped_in(model, model.optimizer):
        expected = np.asarray(model(X, training=False))
    weights = sorted(tuple(weight.shape) for weight in model.weights)
    assert len(model.optimizer.variables) > 3 * len(model.trainable_weights)  # what stays out
    for version in (1, 2):
        folder = tmp_path / "exported_models" / str(version)
        reader = tf.train.load_checkpoint(str(folder / "variables/variables"))
        saved = sorted(tuple(shape) for key, shape in reader.get_variable_to_shape_map().items()
                       if key != OBJECT_GRAPH_KEY)
        if served == "reads_the_optimizer":
            assert len(saved) > len(weights) + 3 * len(model.trainable_weights), folder
        else:
            assert saved == weights, folder
    answer = tf.saved_model.load(str(folder)).signatures["serving_default"](input=tf.constant(X))
    np.testing.assert_allclose(answer["output_0"].numpy(), expected, rtol=1e-6, atol=1e-6)
    said = "Exports hold the optimizer too" in caplog.text
    assert said == (served == "reads_the_optimizer"), caplog.text
    if served == "reads_the_optimizer":
        assert set(answer["steps"].numpy()) == {int(model.optimizer.iterations)}


@pytest.mark.claim("a resume that finds no usable checkpoint sets aside every version of the discarded attempt "
                   "(`discarded-N`, one line each); numbers go on past them")
def test_a_resume_sets_aside_the_versions_exported_after_its_checkpoint_and_never_reuses_their_numbers(tmp_path):
    """A kill (or a full disk) between an export and the checkpoint of its epoch leaves a version from an epoch the
    resume trains again: it is moved to `discarded-N` with one warning, and the next version is N + 1, not N (a
    server that loaded N would never notice a new N)."""
    import keras

    model = keras.Sequential([keras.Input((1,), name="input"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(use_ema=True), loss="mse")
    model.optimizer.build(model.trainable_variables)
    exporter = exporter_of(tmp_path, model)
    for epoch in (1, 2, 3):
        exporter.export(epochs_completed=epoch)
    exporter.finish()
    state = {"requested": {"version": 2, "epochs_completed": 2}}  # the checkpoint of epoch 2; version 3 came after

    resumed = exporter_of(tmp_path, model)
    resumed.set_state(state)
    assert resumed.set_aside_at_resume() == [3]
    assert sorted(path.name for path in (tmp_path / "exported_models").iterdir()) == ["1", "2", "discarded-3"]
    assert resumed.export(epochs_completed=3) == 4
    resumed.finish()

    # no usable checkpoint left (all damaged, or pruned): the resume trains from the first epoch, so every version
    # is the discarded attempt's; served beside the new ones, they would mix two trainings
    again = exporter_of(tmp_path, model)
    assert again.set_aside_at_resume(from_the_start=True) == [1, 2, 4]
    assert sorted(path.name for path in (tmp_path / "exported_models").iterdir()) == [
        "discarded-1", "discarded-2", "discarded-3", "discarded-4"]
    assert again.export(epochs_completed=1) == 5
    again.finish()
