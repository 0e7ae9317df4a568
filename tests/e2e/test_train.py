"""Training end to end: folder layout, run.json, EMA exports that load and predict like the in-process model."""

import re
import shutil
import socket

import numpy as np
import pytest

from conftest import REPO, read_run, run_command, settings_variant, single_experiment

WORKING_FOLDER = "experiments/examples/curve_fitting"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One in-process training run shared by the layout and export tests."""
    import os

    from experiments_manager import training

    workdir = tmp_path_factory.mktemp("train")
    shutil.copytree(REPO / "examples", workdir / "examples")
    previous = os.getcwd()
    os.chdir(workdir)
    try:
        settings = settings_variant(
            workdir, "every_epoch.py", ["save_only_last_best_model = False", "export_versions_to_keep = 2"]
        )
        outcome = training.train(settings, {"nbEpoch": 3}, command=["test"])
    finally:
        os.chdir(previous)
    return workdir, outcome


@pytest.mark.claim('one settings file trains, exports and tracks an experiment')
@pytest.mark.claim('`train -u SETTINGS` trains an experiment')
@pytest.mark.claim('folder name `<session>_<time>_<key>=<value>...` of the hparams set on the command line')
@pytest.mark.claim(
    '`experiment_settings.py` is a copy of the settings file; `<model_name>.py` a copy of the model file')
@pytest.mark.claim('`checkpoints/ckpt-N/`, `logs/`')
@pytest.mark.claim(
    'training_curves.png: a panel per quantity, best epoch marked, title, raw dashed',
    note='(weak: checks the PNG signature only)')
@pytest.mark.claim(
    '`examples/regression` (original style, served module, Client_IO, hyperopt_space) trains, serves, sweeps')
def test_run_finishes_with_the_documented_layout(trained):
    workdir, outcome = trained
    root = outcome.experiment.root if outcome.experiment.root.is_absolute() else workdir / outcome.experiment.root
    assert outcome.status == "finished" and outcome.exit_code == 0
    assert root.parent == workdir / WORKING_FOLDER
    # the session, the start and the hparams set on the command line (the rest is in run.json)
    assert re.fullmatch(r"my_test_\d{4}-\d\d-\d\d--\d\d-\d\d-\d\d_nbEpoch=3", root.name), root.name
    assert (root / "experiment_settings.py").read_text() == (workdir / "examples/regression/every_epoch.py").read_text()
    assert (root / "model_curve_fitting.py").is_file()
    assert (root / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((root / "checkpoints").glob("ckpt-*/state.json"))
    assert (root / "logs/train").is_dir() and (root / "logs/validation").is_dir()
    # what TensorBoard shows of these files is tested through a real tensorboard in test_tensorboard.py
    assert not [p for p in (root / "exported_models").iterdir() if p.name.startswith(".")]


@pytest.mark.claim('run.json: status, hparams, seed, versions, best value and epoch, exported versions')
@pytest.mark.claim('run.json: command')
@pytest.mark.claim('run.json: host')
@pytest.mark.claim('history.csv has a `learning_rate` column')
@pytest.mark.claim(
    '`save_only_last_best_model = True` exports on improvement; `False` every epoch; `export_versions_to_keep`',
    note='(False, 2 kept)')
@pytest.mark.claim('`em.train("file.py", {hparams})`', note='(weak: calls `training.train`, which `em.train` wraps)')
def test_run_json_records_what_reproduces_the_run(trained):
    workdir, outcome = trained
    info = read_run(workdir / outcome.experiment.root)
    assert info["status"] == "finished"
    assert info["seed"] == 42
    assert info["hparams"]["nbEpoch"] == 3 and info["hparam_overrides"] == {"nbEpoch": 3}
    assert info["versions"]["tensorflow"].startswith("2.21")
    assert info["versions"]["keras"].startswith("3.")
    assert info["epochs_completed"] == 3
    history = np.genfromtxt(workdir / outcome.experiment.root / "history.csv", delimiter=",", names=True)
    assert info["best_value"] == pytest.approx(history["val_loss"].min())
    assert info["best_epoch"] == int(np.argmin(history["val_loss"])) + 1
    # every epoch exported (save_only_last_best_model = False), two kept (and the best: here the last)
    assert info["exported_versions"] == [2, 3] and info["last_exported_version"] == 3
    for version in ("1", "2", "3"):  # the epoch each version holds, and its val_loss then
        record = info["version_records"][version]
        assert record["epoch"] == int(version) and record["monitor"] == "val_loss"
        assert record["value"] == pytest.approx(history["val_loss"][int(version) - 1], rel=1e-6)
    assert sorted(p.name for p in (workdir / outcome.experiment.root / "exported_models").iterdir()) == ["2", "3"]
    assert info["command"] == ["test"] and info["host"] == socket.gethostname()
    assert info["git_commit"] is None  # the settings' folder is no git checkout here; see the next test
    assert "learning_rate" in history.dtype.names and np.allclose(history["learning_rate"], 0.01)


@pytest.mark.claim('run.json: git commit', note='(and None outside a checkout)')
def test_run_json_records_the_git_commit_of_the_settings_checkout():
    import subprocess

    from experiments_manager.run.attempts import git_commit as _git_commit

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    assert _git_commit(REPO / "examples/regression").startswith(head.stdout.strip())


@pytest.mark.claim('`weights_moving_averages = False` trains without EMA')
@pytest.mark.claim('`validate_raw_weights = False` skips that pass')
def test_ema_and_the_raw_weights_validation_can_be_switched_off(workdir):
    from experiments_manager import training

    settings = settings_variant(workdir, "plain.py", ["weights_moving_averages = False", "validate_raw_weights = False"])
    outcome = training.train(str(settings), {"nbEpoch": 2}, command=["test"])
    assert outcome.status == "finished"
    assert not getattr(outcome.trained_model.optimizer, "use_ema", False)  # trained without averaged weights
    header = (outcome.experiment.root / "history.csv").read_text().splitlines()[0].split(",")
    assert "val_loss" in header and not [column for column in header if column.endswith("_raw")]


@pytest.mark.claim('`exported_models/<N>/` SavedModels with signatures `serving_default` and `<model_name>`')
@pytest.mark.claim('EMA: validation, best value, early stopping and exports use the averaged weights')
def test_export_loads_and_predicts_like_the_in_process_ema_model(trained):
    import tensorflow as tf

    workdir, outcome = trained
    root = workdir / outcome.experiment.root
    loaded = tf.saved_model.load(str(root / "exported_models/3"))
    assert {"serving_default", "model_curve_fitting"} <= set(loaded.signatures)
    x = np.linspace(-2, 2, 41, dtype=np.float32).reshape(-1, 1)
    served = loaded.signatures["serving_default"](input=tf.constant(x))
    in_process = outcome.trained_model(x, training=False)  # EMA weights: Keras finalizes them at the end of fit
    np.testing.assert_allclose(served["prediction"].numpy(), np.asarray(in_process), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(served["prediction_plus_1"].numpy(), served["prediction"].numpy() + 1, rtol=1e-6)


@pytest.mark.claim('EMA: validation, best value, early stopping and exports use the averaged weights')
def test_export_uses_ema_weights_not_the_raw_ones(trained):
    import tensorflow as tf

    from experiments_manager.settings import load_settings
    from experiments_manager.training import build_model

    workdir, outcome = trained
    root = workdir / outcome.experiment.root
    settings = load_settings(root / "experiment_settings.py", {"nbEpoch": 3}, model_file=root / "model_curve_fitting.py")
    raw = build_model(settings)
    latest = sorted((root / "checkpoints").glob("ckpt-*"))[-1]
    raw.load_weights(str(latest / "model.weights.h5"))
    x = np.linspace(-2, 2, 41, dtype=np.float32).reshape(-1, 1)
    served = tf.saved_model.load(str(root / "exported_models/3")).signatures["serving_default"](input=tf.constant(x))
    assert np.max(np.abs(served["prediction"].numpy() - np.asarray(raw(x)))) > 1e-3


@pytest.mark.claim('`models.config` points TF Serving at the exports')
def test_models_config_points_tf_serving_at_the_exports(trained):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    workdir, outcome = trained
    root = workdir / outcome.experiment.root
    config = text_format.Parse((root / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == "model_curve_fitting"
    assert model.base_path == str((root / "exported_models").resolve())
    assert model.model_platform == "tensorflow"


@pytest.mark.claim('Scalars: `best_<monitored_loss_name>`')
def test_tensorboard_gets_hparams_and_best_value(trained):
    import tensorflow as tf

    workdir, outcome = trained
    plugins, tags = set(), set()
    for events in (workdir / outcome.experiment.root / "logs").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                plugins.add(value.metadata.plugin_data.plugin_name)
                tags.add(value.tag)
    assert "hparams" in plugins
    assert "best_val_loss" in tags


@pytest.mark.claim('one row per experiment: status, epochs done, best value, exported versions')
@pytest.mark.claim(
    'experiments up to 4 levels below; a folder above several working folders lists them all; hidden folders and '
    'virtualenvs skipped',
    note='(`list --wide experiments`)')
@pytest.mark.claim("`--wide` adds every run's hparams")
def test_list_shows_the_experiment(trained):

    from conftest import cli_env

    workdir, outcome = trained
    result = run_command(["list", WORKING_FOLDER], cwd=workdir, env=cli_env(),
                         capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.strip().splitlines()
    assert header.split() == ["EXPERIMENT", "STATUS", "EPOCH", "BEST", "BEST_EPOCH", "VERSIONS", "DEVICE_HOURS"]
    assert row.startswith(outcome.experiment.root.name)
    records = read_run(workdir / outcome.experiment.root)["version_records"]  # each version with its epoch
    assert " finished " in row and " 3/3 " in row and len(row) < 120, row
    versions, hours = row.split()[-2:]
    assert versions == f"2@e{records['2']['epoch']},3@e{records['3']['epoch']}", row
    assert 0 < float(hours) < 0.1, row  # its one attempt's wall time x the CPU cores it could use
    # --wide adds every hparam; a folder above the working folder lists it at its depth
    wide = run_command(["list", "--wide", "experiments"], cwd=workdir, env=cli_env(),
                       capture_output=True, text=True, timeout=60)
    header, row = wide.stdout.strip().splitlines()
    assert header.split() == ["EXPERIMENT", "STATUS", "EPOCH", "BEST", "BEST_EPOCH", "VERSIONS", "DEVICE_HOURS",
                              "HPARAMS"]
    assert row.startswith(f"examples/curve_fitting/{outcome.experiment.root.name}") and "nbEpoch=3" in row


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings, working_folder",
    [
        ("examples/classification/mysettings_image_classification.py", "experiments/examples/classification"),
        ("examples/timeseries/mysettings_timeseries_forecasting.py", "experiments/examples/timeseries"),
    ],
)
@pytest.mark.claim('`train -u SETTINGS` trains an experiment')
@pytest.mark.claim(
    'at the end, the command prints the experiment folder, exported model (the best version, its epoch and value), '
    'TF Serving config and TensorBoard command',
    note='(weak: the `experiment folder:` and `exported model:` lines are asserted)')
@pytest.mark.claim('`examples/classification` trains with `val_accuracy` maximised; `examples/timeseries` trains')
def test_examples_train(settings, working_folder, workdir, run_cli):
    result = run_cli("train", "-u", settings, "--hparam", "nbEpoch=2")
    assert result.returncode == 0, result.stdout + result.stderr
    root = single_experiment(workdir / working_folder)
    info = read_run(root)
    assert info["status"] == "finished" and info["epochs_completed"] == 2
    history = np.genfromtxt(root / "history.csv", delimiter=",", names=True)
    monitored = info["monitored_loss_name"]
    best = history[monitored].max() if "accuracy" in monitored else history[monitored].min()
    assert info["best_value"] == pytest.approx(best)
    assert f"experiment folder: {root.relative_to(workdir)}" in result.stdout
    # the summary's exported model is the version holding the best epoch, and says so
    version, epoch = info["last_exported_version"], info["best_epoch"]
    assert info["version_records"][str(version)]["epoch"] == epoch
    assert (f"exported model:    {(root / 'exported_models' / str(version)).relative_to(workdir)} (epoch {epoch}, "
            f"best {monitored} {info['best_value']:.4g})") in result.stdout
    # no get_served_module in these settings: the model's own call is served, from its Input specs
    import tensorflow as tf

    served = tf.saved_model.load(str(root / "exported_models" / str(info["last_exported_version"])))
    signature = served.signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    batch = tf.zeros([3] + spec.shape.as_list()[1:], spec.dtype)
    (output,) = signature(**{spec.name: batch}).values()
    assert output.shape[0] == 3 and np.all(np.isfinite(output.numpy()))


@pytest.mark.slow
def test_mixed_precision_and_xla_switches(workdir):
    settings = settings_variant(
        workdir, "fast_mp.py",
        ["enable_mixed_precision = True", "useXLA = True", "nb_train_samples = 256", "nb_val_samples = 64"],
        base="examples/classification/mysettings_image_classification.py",
    )
    import keras

    from experiments_manager import training

    outcome = training.train(str(settings), {"nbEpoch": 1}, command=["test"])
    assert outcome.status == "finished"
    model = outcome.trained_model  # what trained, not what the settings say
    assert model.dtype_policy.name == "mixed_float16" and model.layers[1].compute_dtype == "float16"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)  # the loss scaled, as mixed precision needs
    assert model.jit_compile is True
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored after the run
    info = read_run(outcome.experiment.root)
    assert info["mixed_precision"] is True and info["xla"] is True and info["exported_versions"] == [1]


@pytest.mark.slow
@pytest.mark.claim('`python -m experiments_manager --usersettings FILE` (original spelling) trains')
@pytest.mark.claim('Profile with `use_profiling = True`')
@pytest.mark.claim('original names the engine does not need are accepted and ignored')
@pytest.mark.claim('files of the original framework run unchanged')
def test_settings_of_the_original_framework_run_unchanged(workdir, run_cli):
    shutil.copytree(REPO / "tests/data", workdir / "tests/data")
    result = run_cli("--usersettings", "tests/data/original_style/mysettings_original.py")
    assert result.returncode == 0, result.stdout + result.stderr
    root = single_experiment(workdir / "experiments/original_style")
    info = read_run(root)
    assert info["status"] == "finished" and info["epochs_completed"] == 2
    assert "val_mean_squared_error" in info["last_epoch_logs"]
    assert (root / "exported_models/1/saved_model.pb").is_file()
    assert info["xla"] is True
    assert list((root / "logs/plugins/profile").rglob("*.xplane.pb"))  # use_profiling = True


@pytest.mark.slow
def test_nan_loss_stops_and_marks_the_run_failed(workdir, run_cli):
    settings = settings_variant(workdir, "nan.py", ["def get_learningRate():", "    return 1e30"])
    result = run_cli("train", "-u", str(settings), "--hparam", "nbEpoch=3")
    assert result.returncode == 1
    info = read_run(single_experiment(workdir / WORKING_FOLDER))
    assert info["status"] == "failed" and re.fullmatch(r"loss became NaN or infinite at epoch [12]", info["error"])
    assert info["epochs_completed"] < 3  # TerminateOnNaN stopped it: the 3 epochs did not run
    assert "status:            failed (loss became NaN" in result.stdout


@pytest.mark.slow
@pytest.mark.claim('history.csv: one row per epoch; `val_<metric>` is the EMA weights, `val_<metric>_raw` the raw ones')
@pytest.mark.claim("Scalars: `train`, `validation` (EMA) and `validation_raw` in one chart, with history.csv's values")
@pytest.mark.claim('raw weights are validated too (`val_loss_raw`, `validation_raw` run)')
def test_tensorboard_shows_the_raw_weights_validation_in_the_same_chart(trained):
    """A real `tensorboard` process: the epoch_loss chart holds train, validation (EMA) and validation_raw,
    with the values of history.csv; the raw weights on their schedule (`raw_validation_freq`)."""
    import subprocess
    import sys
    from pathlib import Path

    import requests

    from conftest import free_port, wait_for

    workdir, outcome = trained
    root = workdir / outcome.experiment.root
    port = free_port()
    board = subprocess.Popen([str(Path(sys.executable).with_name("tensorboard")), "--logdir", str(root),
                              "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/data/plugin/scalars"
    try:
        def tags():
            try:
                answer = requests.get(f"{url}/tags", timeout=2).json()
            except (requests.ConnectionError, ValueError):
                return None
            return answer if {"logs/train", "logs/validation", "logs/validation_raw"} <= set(answer) else None

        runs = wait_for(tags, 60, "TensorBoard to list the train, validation and validation_raw runs", interval=0.5)
        assert all("epoch_loss" in runs[f"logs/{run}"] for run in ("train", "validation", "validation_raw"))
        history = np.genfromtxt(root / "history.csv", delimiter=",", names=True)
        # EMA: every epoch; raw: on its schedule (epochs 1, 11, ... and the last: 1 and 3 of 3), blank between
        for run, column, epochs in (("logs/validation", "val_loss", [1, 2, 3]),
                                    ("logs/validation_raw", "val_loss_raw", [1, 3])):
            points = requests.get(f"{url}/scalars", params={"run": run, "tag": "epoch_loss"}, timeout=5).json()
            assert [step for _, step, _ in points] == epochs
            np.testing.assert_allclose([value for _, _, value in points],
                                       history[column][np.isin(history["epoch"], epochs)], rtol=1e-6)
            assert np.isnan(history[column][~np.isin(history["epoch"], epochs)]).all()
    finally:
        board.kill()
        board.wait(timeout=30)
