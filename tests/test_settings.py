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
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_settings_exit_2_with_one_line_per_problem(case, workdir, run_cli):
    lines, expected = MALFORMED[case]
    (workdir / "examples/regression/not_a_model.py").write_text("x = 1\n")
    settings = settings_variant(workdir, "bad.py", lines)
    result = run_cli("train", "-u", str(settings))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(expected), result.stderr
    for line, wanted in zip(errors, expected):
        for part in (wanted,) if isinstance(wanted, str) else wanted:
            assert part in line, (line, part)
    # nothing half-written: no experiment folder was created
    assert not (workdir / WORKING_FOLDER).exists() or not any((workdir / WORKING_FOLDER).iterdir())


def test_unknown_monitored_name_fails_the_run_with_a_clear_line(workdir, run_cli):
    settings = settings_variant(workdir, "bad.py", ["monitored_loss_name = 'val_los'"])
    result = run_cli("train", "-u", str(settings), "--hparam", "nbEpoch=1")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error: bad.py: monitored_loss_name: expected one of the logged values" in result.stderr
    assert "got 'val_los'" in result.stderr
    assert read_run(single_experiment(workdir / WORKING_FOLDER))["status"] == "failed"


def test_overrides_are_visible_to_module_level_code(workdir):
    settings = load_settings(REGRESSION_SETTINGS, {"nbEpoch": 7, "hiddenNeurons": 4})
    assert settings.training.epochs == 7  # computed at import time as hparams['nbEpoch']
    assert settings.experiment.hparams["hiddenNeurons"] == 4
    assert settings.experiment.hparams["learningRate"] == 0.01  # untouched keys stay


def test_overrides_win_over_later_module_level_changes(workdir):
    path = workdir / "nested.py"
    source = (workdir / REGRESSION_SETTINGS).read_text()
    source = source.replace("nbEpoch = hparams['nbEpoch']", textwrap.dedent("""\
        if True:
            hparams = dict(hparams, nbEpoch=100)
        hparams['nbEpoch'] = 50
        nbEpoch = hparams['nbEpoch']"""))
    path.write_text(source)
    settings = load_settings(path, {"nbEpoch": 2, "newKey": "x"})
    assert settings.training.epochs == 2
    assert settings.experiment.hparams["newKey"] == "x"
    assert path.read_text() == source  # the user's file is never rewritten


def test_hparam_values_are_python_literals_else_strings():
    assert parse_hparam_overrides(["a=3", "b=0.5", "c=True", "d=[1, 2]", "e=FedAvg", "f='q'"]) == {
        "a": 3, "b": 0.5, "c": True, "d": [1, 2], "e": "FedAvg", "f": "q",
    }


def test_defaults_are_filled_and_old_names_accepted(workdir):
    settings = load_settings(REGRESSION_SETTINGS)
    assert settings.training.ema_momentum == 0.99
    assert settings.export.versions_to_keep == 5
    assert settings.module.served_input_names == ["input"]  # accepted, ignored by the engine (the model file may read it)
    assert settings.model_name == "model_curve_fitting"
    assert settings.model_file == Path("examples/regression/model_curve_fitting.py")


def test_keras2_metric_names_resolve_after_loading(workdir):
    import numpy as np
    import tensorflow as tf

    load_settings(REGRESSION_SETTINGS)
    for name in ("mean_squared_error", "mean_absolute_error", "log_cosh", "kl_divergence"):
        assert callable(getattr(tf.keras.metrics, name))
        assert callable(getattr(tf.keras.losses, name))
    value = tf.keras.metrics.mean_squared_error(np.zeros((2, 1)), np.ones((2, 1)))
    np.testing.assert_allclose(np.asarray(value), [1.0, 1.0])


def test_model_file_found_next_to_the_settings(workdir, monkeypatch):
    monkeypatch.chdir(workdir / "examples")  # 'examples/regression/...' does not exist from here
    settings_path = workdir / "examples/regression/local.py"
    settings_path.write_text(
        (workdir / REGRESSION_SETTINGS).read_text().replace(
            "model_file = 'examples/regression/model_curve_fitting.py'", "model_file = 'model_curve_fitting.py'")
    )
    settings = load_settings(settings_path)
    assert settings.model_file == workdir / "examples/regression/model_curve_fitting.py"


def test_all_problems_reported_in_one_error(workdir):
    settings = settings_variant(workdir, "bad.py", ["batch_size = 0", "nbEpoch = 'x'", "del get_total_loss"])
    with pytest.raises(UserInputError) as caught:
        load_settings(settings)
    assert len(caught.value.problems) == 3
