"""The settings contract: bad files give one clear line per problem; overrides reach module-level code."""

import textwrap
from pathlib import Path

import pytest

from conftest import REGRESSION_SETTINGS, read_run, settings_variant, single_experiment
from experiments_manager.utils.errors import UserInputError
from experiments_manager.settings import load_settings, parse_hparam_overrides

WORKING_FOLDER = "experiments/examples/curve_fitting"

# name -> (lines appended to the regression settings, one expected error line per item: its substrings)
MALFORMED = {
    "missing_function": (
        ["del get_optimizer"],
        ["bad.py: get_optimizer: missing (required by the settings contract)"],
    ),
    "wrong_type": (["batch_size = '50'"], ["bad.py: batch_size: expected an int > 0, got '50'"]),
    "negative_batch_size": (["batch_size = -3"], ["bad.py: batch_size: expected an int > 0, got -3"]),
    "model_file_absent": (
        ["model_file = 'examples/regression/nope.py'"],
        ["bad.py: model_file: file 'examples/regression/nope.py' not found"],
    ),
    "syntax_error": (["def broken(:", "    pass"], [("bad.py: line", ": syntax error")]),
    "function_with_wrong_parameters": (
        ["def get_optimizer(model):", "    return None"],
        ["bad.py: get_optimizer: expected a function (model, loss, learning_rate), got one taking (model)"],
    ),
    "several_problems_at_once": (
        ["nbEpoch = -3", "get_metrics = 5"],
        ["bad.py: nbEpoch: expected an int > 0, got -3", "bad.py: get_metrics: expected a function (model, loss), got 5"],
    ),
    "error_at_import": (
        ["raise RuntimeError('no data here')"],
        [("bad.py: line", ": error while running the settings module: RuntimeError: no data here")],
    ),
    "model_file_without_model_function": (
        ["model_file = 'examples/regression/not_a_model.py'"],
        ["not_a_model.py: model: missing (expected a function model(usersettings) returning a keras.Model)"],
    ),
    "ema_momentum_out_of_range": (["ema_momentum = 1.5"], ["bad.py: ema_momentum: expected a float in (0, 1), got 1.5"]),
    "hparams_not_a_dict": (["hparams = [1, 2]", "nbEpoch = 3"], ["bad.py: hparams: expected dict, got [1, 2]"]),
    # found only by calling the settings' functions: the dry build, before any folder exists
    "pipeline_returns_an_array": (
        ["def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):",
         "    return np.zeros((10, 1))"],
        ["bad.py: get_input_pipeline: expected a tf.data.Dataset, a keras.utils.Sequence or a generator of batches "
         "for training, got ndarray",
         "bad.py: get_input_pipeline: expected a tf.data.Dataset, a keras.utils.Sequence or a generator of batches "
         "for validation, got ndarray"],
    ),
    "model_raises": (
        ["hparams['hiddenNeurons'] = 'many'"],
        [("model_curve_fitting.py: model (line ", "): raised ")],
    ),
    "optimizer_is_none": (
        ["def get_optimizer(model, loss, learning_rate):", "    return None"],
        ["bad.py: get_optimizer: expected a Keras optimizer (e.g. keras.optimizers.Adam(learning_rate)), got None"],
    ),
    "misspelt_loss": (
        ["def get_total_loss(model):", "    return 'mean_squered_error'"],
        ["bad.py: get_total_loss: expected a Keras loss, got the unknown name 'mean_squered_error' "
         "(did you mean 'mean_squared_error'?)"],
    ),
    "misspelt_metric": (
        ["def get_metrics(model, loss):", "    return ['mean_absolute_eror']"],
        [("bad.py: get_metrics: 'mean_absolute_eror': not a metric name Keras knows",)],
    ),
    "wrong_input_width": (
        ["def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):",
         "    return tf.data.Dataset.from_tensor_slices((tf.zeros((20, 3)), tf.zeros((20, 1)))).batch(4)"],
        [("bad.py: get_input_pipeline: a training batch float32[4, 3] does not fit the model's inputs",
          "expected axis -1 of input shape to have value 1"),
         ("bad.py: get_input_pipeline: a validation batch float32[4, 3]",)],
    ),
    "labels_of_the_wrong_shape": (
        ["def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):",
         "    return tf.data.Dataset.from_tensor_slices((tf.zeros((20, 1)), tf.zeros((20, 2, 3)))).batch(4)"],
        [("bad.py: get_total_loss: the loss cannot compare the training labels float32[4, 2, 3] with the model's "
          "outputs float32[4, 1]",), ("bad.py: get_total_loss: the loss cannot compare the validation labels",)],
    ),
    "pipeline_of_dicts": (
        ["def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):",
         "    return tf.data.Dataset.from_tensor_slices({'x': tf.zeros((20, 1)), 'y': tf.zeros((20, 1))}).batch(4)"],
        ["bad.py: get_input_pipeline: expected training batches (x, y) or (x, y, sample_weight), got "
         "{'x': float32[4, 1], 'y': float32[4, 1]}",
         "bad.py: get_input_pipeline: expected validation batches (x, y) or (x, y, sample_weight), got "
         "{'x': float32[4, 1], 'y': float32[4, 1]}"],
    ),
    "served_module_without_signature": (
        ["def get_served_module(model, model_name):", "    return model"],
        ["bad.py: get_served_module: expected a tf.Module whose served_model is a tf.function with an input_signature, "
         "got Functional"],
    ),
    "served_signature_does_not_fit": (  # an input of 64 values where the model takes 1: fails at the first export
        ["def get_served_module(model, model_name):",
         "    class Served(tf.Module):",
         "        def __init__(self):",
         "            super().__init__()",
         "            self.model = model",
         "        @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32)])",
         "        def served_model(self, x):",
         "            return {'prediction': self.model(x)}",
         "    return Served()"],
        [("bad.py: get_served_module: the served function's input signature (float32[None, 64]) does not fit the "
          "model: ValueError: ", "expected axis -1 of input shape to have value 1")],
    ),
    "metric_cannot_compare_labels": (  # one-hot labels with a sparse metric: fails at the end of epoch 1
        ["def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):",
         "    return tf.data.Dataset.from_tensor_slices((tf.zeros((20, 1)), tf.one_hot([0, 1] * 10, 3))).batch(4)",
         "def get_total_loss(model):",
         "    return lambda labels, outputs: tf.reduce_mean(tf.square(outputs))",
         "def get_metrics(model, loss):",
         "    return ['sparse_categorical_accuracy']"],
        [("bad.py: get_metrics: the metrics (sparse_categorical_accuracy) cannot compare the training labels "
          "float32[4, 3] with the model's outputs float32[4, 1]: InvalidArgumentError: Incompatible shapes",),
         ("bad.py: get_metrics: the metrics (sparse_categorical_accuracy) cannot compare the validation labels",)],
    ),
    "monitor_not_logged": (  # a metric's name the settings do not compute: found at the end of epoch 1 before
        ["monitored_loss_name = 'val_accuracy'"],
        [("bad.py: monitored_loss_name: expected one of the values an epoch logs (", "val_mean_absolute_error",
          "got 'val_accuracy'")],
    ),
    "client_io_missing_a_method": (
        ["class Client_IO:", "    def __init__(self, clientInitSpecs, debugMode):", "        pass",
         "    def getInputData(self, idx):", "        return {}"],
        ["bad.py: Client_IO: expected a class with methods getInputData, decodeResponse, finalize; Client_IO lacks "
         "decodeResponse, finalize"],
    ),
}


CLI_CASES = ("syntax_error", "several_problems_at_once", "wrong_input_width")  # through the real command line


def _check_error_lines(errors, expected, output):
    assert len(errors) == len(expected), output
    for line, wanted in zip(errors, expected):
        for part in (wanted,) if isinstance(wanted, str) else wanted:
            assert part in line, (line, part)


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.claim(
    'before training, the model, loss, optimizer, metrics, one batch of each pipeline and the served signature are '
    'checked',
    note='(in this process: cases `model_raises`, `optimizer_is_none`, `pipeline_returns_an_array`, '
         '`wrong_input_width`, `labels_of_the_wrong_shape`, `served_module_without_signature`, ...)')
@pytest.mark.claim('a misspelt loss name gets the closest Keras one', note='(case `misspelt_loss`)')
@pytest.mark.claim(
    '`monitored_loss_name` that no epoch would log is one line before training, with the names that are logged',
    note='(case `monitor_not_logged`)')
@pytest.mark.claim(
    'the dry build computes every metric on a batch and traces and calls the served function: one-hot labels with '
    'a sparse metric, a served signature that does not fit the model are one line each',
    note='(cases `metric_cannot_compare_labels`, `served_signature_does_not_fit`)')
@pytest.mark.claim(
    'each problem is one `error:` line naming file, function and what was expected; exit 2; the announced folder '
    'removed, nothing left',
    note='(all 21 cases, in this process)')
def test_malformed_settings_fail_with_one_problem_per_line_before_any_folder(case, workdir):
    """Every case of the corpus in this process (what `train` runs: load, check, dry build): one problem each,
    naming file and field, and no experiment folder; `CLI_CASES` show the same lines through the command line."""
    from experiments_manager.training import train

    lines, expected = MALFORMED[case]
    (workdir / "examples/regression/not_a_model.py").write_text("x = 1\n")
    settings = settings_variant(workdir, "bad.py", lines)
    with pytest.raises(UserInputError) as caught:
        train(str(settings))
    problems = caught.value.problems
    _check_error_lines([f"error: {problem}" for problem in problems], expected, problems)
    assert not (workdir / WORKING_FOLDER).exists() or not any((workdir / WORKING_FOLDER).iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("case", CLI_CASES)
@pytest.mark.claim(
    'each problem is one `error:` line naming file, function and what was expected; exit 2; the announced folder '
    'removed, nothing left',
    note='(3 cases through the command line)')
@pytest.mark.claim(
    'every settings problem reported at once, one line each, exit 2, nothing written',
    note='(case `several_problems_at_once`)')
def test_malformed_settings_exit_2_with_one_line_per_problem(case, workdir, run_cli):
    lines, expected = MALFORMED[case]
    settings = settings_variant(workdir, "bad.py", lines)
    result = run_cli("train", "-u", str(settings))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    _check_error_lines([line for line in result.stderr.splitlines() if line.startswith("error: ")], expected,
                       result.stderr)
    # nothing half-written: no experiment folder was created
    assert not (workdir / WORKING_FOLDER).exists() or not any((workdir / WORKING_FOLDER).iterdir())


@pytest.mark.slow
@pytest.mark.claim(
    'a settings function failing later is one line naming the function and its line; run.json `failed` with that '
    'line')
@pytest.mark.claim(
    "`custom_tensorboard_logs` is called with Keras' epoch, from 0",
    note='(raises at epoch 2: two epochs completed)')
def test_a_settings_function_failing_in_epoch_3_is_one_line_and_the_run_says_so(workdir, run_cli):
    settings = settings_variant(workdir, "late.py", [
        "def custom_tensorboard_logs(model, epoch, logs):",
        "    if epoch == 2:  # Keras' epoch, from 0: the third",
        "        raise ValueError('the disk for extra logs is full')",
    ])
    result = run_cli("train", "-u", str(settings), "--hparam", "nbEpoch=4")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: late.py: custom_tensorboard_logs (line "), errors
    assert errors[0].endswith("): raised ValueError: the disk for extra logs is full")
    info = read_run(single_experiment(workdir / WORKING_FOLDER))
    assert info["status"] == "failed" and info["error"] == errors[0].removeprefix("error: ")
    assert info["epochs_completed"] == 2


@pytest.mark.slow
@pytest.mark.claim('an unknown monitored name is one line before any folder, with the logged names and the closest')
def test_unknown_monitored_name_is_one_line_before_any_folder(workdir, run_cli):
    """A misspelt `monitored_loss_name` is refused by the dry build, with the names an epoch logs and the closest
    one, not at the end of epoch 1 with a `failed` folder."""
    settings = settings_variant(workdir, "bad.py", ["monitored_loss_name = 'val_los'"])
    result = run_cli("train", "-u", str(settings), "--hparam", "nbEpoch=1")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "Epoch 1/1" not in result.stdout
    assert "error: bad.py: monitored_loss_name: expected one of the values an epoch logs (" in result.stderr
    assert "got 'val_los' (did you mean 'val_loss'?)" in result.stderr
    assert not (workdir / WORKING_FOLDER).exists() or not any((workdir / WORKING_FOLDER).iterdir())


@pytest.mark.claim("`--hparam` of a setting's name sets the setting for the run when the file did not, in one line")
def test_an_hparam_override_named_like_a_setting_sets_it(workdir, caplog):
    """`--hparam nbEpoch=2` for a file writing `nbEpoch = 40` (not read from hparams): the run trains 2 epochs, as its
    folder name says, and one line says so; an optional setting the file leaves out is set the same way."""
    import logging

    path = settings_variant(workdir, "literal.py", ["nbEpoch = 40"])
    with caplog.at_level(logging.WARNING, logger="experiments_manager"):
        settings = load_settings(path, {"nbEpoch": 2, "early_stopping_patience": 3, "hiddenNeurons": 8})
    assert settings.training.epochs == 2 and settings.training.early_stopping_patience == 3
    assert settings.experiment.hparams["hiddenNeurons"] == 8
    assert [record.getMessage() for record in caplog.records] == [
        "literal.py: --hparam early_stopping_patience=3: early_stopping_patience is a setting: this run's "
        "early_stopping_patience is 3 (the file says 10)",
        "literal.py: --hparam nbEpoch=2: nbEpoch is a setting: this run's nbEpoch is 2 (the file says 40)"]


@pytest.mark.claim('overrides are merged as soon as the module assigns `hparams` (module-level code sees them)')
def test_overrides_are_visible_to_module_level_code(workdir):
    settings = load_settings(REGRESSION_SETTINGS, {"nbEpoch": 7, "hiddenNeurons": 4})
    assert settings.training.epochs == 7  # computed at import time as hparams['nbEpoch']
    assert settings.experiment.hparams["hiddenNeurons"] == 4
    assert settings.experiment.hparams["learningRate"] == 0.01  # untouched keys stay


@pytest.mark.claim('overrides are merged as soon as the module assigns `hparams` (module-level code sees them)')
@pytest.mark.claim('the settings file is never rewritten', note='(file text unchanged)')
def test_overrides_win_over_later_module_level_changes(workdir):
    path = workdir / "nested.py"
    source = (workdir / REGRESSION_SETTINGS).read_text()
    source = source.replace("nbEpoch = hparams['nbEpoch']", textwrap.dedent("""\
        if True:
            hparams = dict(hparams, nbEpoch=100)
        hparams['nbEpoch'] = 50
        nbEpoch = hparams['nbEpoch']"""))
    path.write_text(source)
    settings = load_settings(path, {"nbEpoch": 2, "+newKey": "x"})
    assert settings.training.epochs == 2
    assert settings.experiment.hparams["newKey"] == "x"
    assert path.read_text() == source  # the user's file is never rewritten


@pytest.mark.claim('`--hparam` values are Python literals, else strings', )
def test_hparam_values_are_python_literals_else_strings():
    assert parse_hparam_overrides(["a=3", "b=0.5", "c=True", "d=[1, 2]", "e=FedAvg", "f='q'"]) == {
        "a": 3, "b": 0.5, "c": True, "d": [1, 2], "e": "FedAvg", "f": "q",
    }


@pytest.mark.claim('original names the engine does not need are accepted and ignored')
def test_defaults_are_filled_and_old_names_accepted(workdir):
    settings = load_settings(REGRESSION_SETTINGS)
    assert settings.training.ema_momentum == 0.99
    assert settings.export.versions_to_keep == 5
    assert settings.module.served_input_names == ["input"]  # accepted, ignored by the engine (the model file may read it)
    assert settings.model_name == "model_curve_fitting"
    assert settings.model_file == Path("examples/regression/model_curve_fitting.py")


@pytest.mark.slow
@pytest.mark.claim("`'AUC'`, `'mae'`, `'logcosh'`, `tf.keras.metrics.mean_squared_error` logged under Keras 2's names")
def test_keras2_metric_names_resolve_after_loading(workdir):
    """In a fresh process: the Keras 2 names are missing from Keras 3 until a settings file is loaded."""
    import subprocess
    import sys

    from conftest import cli_env

    code = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        from experiments_manager.settings import load_settings
        names = ("mean_squared_error", "mean_absolute_error", "log_cosh", "kl_divergence")
        missing = [name for name in names
                   if not callable(getattr(tf.keras.metrics, name, None)) or not callable(getattr(tf.keras.losses, name, None))]
        load_settings({str(REGRESSION_SETTINGS)!r})
        for name in names:
            assert callable(getattr(tf.keras.metrics, name)) and callable(getattr(tf.keras.losses, name)), name
        value = tf.keras.metrics.mean_squared_error(np.zeros((2, 1)), np.ones((2, 1)))
        np.testing.assert_allclose(np.asarray(value), [1.0, 1.0])
        print("missing before:", missing)
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=cli_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "missing before: []" not in result.stdout  # Keras 3 alone lacks some: loading the settings added them


def test_model_file_found_next_to_the_settings(workdir, monkeypatch):
    monkeypatch.chdir(workdir / "examples")  # 'examples/regression/...' does not exist from here
    settings_path = workdir / "examples/regression/local.py"
    settings_path.write_text(
        (workdir / REGRESSION_SETTINGS).read_text().replace(
            "model_file = 'examples/regression/model_curve_fitting.py'", "model_file = 'model_curve_fitting.py'")
    )
    settings = load_settings(settings_path)
    assert settings.model_file == workdir / "examples/regression/model_curve_fitting.py"


@pytest.mark.claim(
    'each problem is one `error:` line naming file, function and what was expected; exit 2; the announced folder '
    'removed, nothing left')
def test_all_problems_reported_in_one_error(workdir):
    settings = settings_variant(workdir, "bad.py", ["batch_size = 0", "nbEpoch = 'x'", "del get_total_loss"])
    with pytest.raises(UserInputError) as caught:
        load_settings(settings)
    assert len(caught.value.problems) == 3
