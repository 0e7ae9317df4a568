"""Which way a monitored metric improves: from Keras' metric objects, Keras' name rules, or the settings."""

import csv
import json
import shutil
import types

import numpy as np
import pytest

from conftest import REPO, settings_variant

R2_LINES = [
    "monitored_loss_name = 'val_r2_score'",
    "def get_metrics(model, loss):",
    "    return [tf.keras.metrics.R2Score()]",
]


@pytest.mark.claim(
    'a loss is minimised; a Keras metric object says which way it improves (R2Score, Pearson, CCC, '
    'CosineSimilarity, FBeta, ...)')
def test_keras_metric_objects_give_the_direction_whatever_their_name():
    """Names that say nothing (no 'acc', no Keras default name): only the objects' own direction decides."""
    import keras

    from experiments_manager.callbacks.monitor_direction import metric_directions
    from experiments_manager.settings.monitor import resolve_monitor_mode

    class Goodness(keras.metrics.Mean):
        def __init__(self):
            super().__init__(name="goodness")
            self._direction = "up"  # what a Keras 3 metric written to grow declares

    maximised = [keras.metrics.R2Score(name="fit_quality"), keras.metrics.CosineSimilarity(name="alignment"),
                 keras.metrics.PearsonCorrelation(name="pearson"), keras.metrics.ConcordanceCorrelation(name="ccc"),
                 keras.metrics.FBetaScore(name="fb"), Goodness()]
    minimised = [keras.metrics.MeanSquaredError(name="spread"),
                 keras.metrics.MeanMetricWrapper(keras.losses.huber, name="robust")]
    directions = metric_directions(types.SimpleNamespace(metrics=maximised + minimised))
    for metric in maximised:
        assert resolve_monitor_mode(f"val_{metric.name}").mode == "min"  # the name alone says nothing
        assert resolve_monitor_mode(f"val_{metric.name}", directions=directions).mode == "max", metric.name
        assert resolve_monitor_mode(f"val_{metric.name}_raw", directions=directions).mode == "max", metric.name
    for metric in minimised:
        assert resolve_monitor_mode(f"val_{metric.name}", directions=directions).mode == "min", metric.name


@pytest.mark.claim("without an object, Keras' name rules apply (`acc`, default names)")
@pytest.mark.claim("`monitored_loss_mode = 'max'` wins", note='(weak: unit `resolve_monitor_mode`, not a run)')
@pytest.mark.claim(
    'a metric nothing says anything about is minimised, with a warning',
    note='(weak: minimised and flagged `guessed`; the warning is not asserted)')
def test_names_without_an_object_follow_keras_rules_and_the_settings_decide_last():
    from experiments_manager.settings.monitor import monitor_mode, resolve_monitor_mode

    assert resolve_monitor_mode("val_acc").mode == "max"  # Keras 2's rule
    for name in ("val_auc", "val_auc_1", "val_output_auc", "val_r2_score", "val_precision"):
        assert resolve_monitor_mode(name).mode == "max", name  # Keras 3's default names of growing metrics
    for name in ("val_cauchy", "val_previous_error", "val_mae"):
        assert resolve_monitor_mode(name).mode == "min", name  # no substring guessing
    assert resolve_monitor_mode("val_my_score").mode == "min"
    assert resolve_monitor_mode("val_my_score").guessed
    assert resolve_monitor_mode("val_my_score", explicit="max").mode == "max"
    assert resolve_monitor_mode("val_loss", explicit="max").mode == "max"  # the user's word wins
    assert monitor_mode("val_my_score", recorded="max") == "max"  # what a sweep reads from run.json


@pytest.fixture(scope="module")
def r2_run(tmp_path_factory):
    """The regression example monitoring R2 (which rises), with early stopping after 3 epochs without a new best."""
    from experiments_manager import training

    workdir = tmp_path_factory.mktemp("r2")
    shutil.copytree(REPO / "examples", workdir / "examples")
    settings = settings_variant(workdir, "r2.py", R2_LINES + ["early_stopping_patience = 3"])
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        outcome = training.train(str(settings), {"nbEpoch": 30}, command=["test"])
    assert outcome.status == "finished", outcome.reason
    root = workdir / outcome.experiment.root
    with open(root / "history.csv", newline="") as handle:
        r2 = [float(row["val_r2_score"]) for row in csv.DictReader(handle)]
    return types.SimpleNamespace(root=root, r2=r2, info=json.loads((root / "run.json").read_text()))


@pytest.mark.claim(
    '`save_only_last_best_model = True` exports on improvement; `False` every epoch; `export_versions_to_keep`',
    note="(True: the last export is the best epoch's)")
@pytest.mark.claim('early stopping, best value, export and sweeps follow that direction')
@pytest.mark.claim('the decision is recorded in run.json (`monitor_mode`)')
def test_a_run_monitoring_r2_keeps_and_serves_the_version_with_the_highest_r2(r2_run):
    import tensorflow as tf

    from experiments_manager.settings import load_experiment_settings
    from experiments_manager.run.experiment import Experiment

    info, r2 = r2_run.info, r2_run.r2
    print("val_r2_score per epoch:", [round(value, 4) for value in r2])
    assert info["monitor_mode"] == "max"
    assert info["best_value"] == pytest.approx(max(r2))
    assert info["best_epoch"] == int(np.argmax(r2)) + 1
    assert max(r2) > r2[0] + 0.05  # it rose: a 'min' mode would have kept epoch 1

    settings = load_experiment_settings(Experiment.open(r2_run.root))
    val = settings.data.get_input_pipeline("", False, settings.training.batch_size, settings.training.epochs)
    served = tf.saved_model.load(str(r2_run.root / "exported_models" / str(info["last_exported_version"])))
    truth = np.concatenate([y.numpy() for _, y in val])
    predicted = np.concatenate([served.signatures["serving_default"](input=x)["prediction"].numpy() for x, _ in val])
    served_r2 = 1 - np.sum((truth - predicted) ** 2) / np.sum((truth - truth.mean()) ** 2)
    assert served_r2 == pytest.approx(max(r2), abs=1e-4)  # what `serve` answers with is the best epoch's model


@pytest.mark.claim('early stopping stops after `early_stopping_patience` epochs without improvement')
@pytest.mark.claim('early stopping, best value, export and sweeps follow that direction')
def test_a_run_monitoring_r2_stops_when_r2_stops_rising(r2_run):
    info, r2 = r2_run.info, r2_run.r2
    best = int(np.argmax(r2))
    assert info["stopped_early"] is True
    assert len(r2) == best + 1 + 3  # three epochs without a higher r2, then it stopped
    assert best >= 3  # r2 rose for more than the patience: a 'min' mode stops after epoch 4


@pytest.mark.slow
@pytest.mark.claim('a maximised metric is negated for hyperopt, reported as is, in the direction the trial recorded')
@pytest.mark.claim('early stopping, best value, export and sweeps follow that direction')
def test_a_sweep_on_r2_picks_the_trial_with_the_highest_r2(workdir, run_cli):
    """R2 under a name no rule knows: only the direction each trial recorded tells the sweep to maximise."""
    settings = settings_variant(workdir, "r2_sweep.py", [
        "monitored_loss_name = 'val_fit_quality'",
        "def get_metrics(model, loss):",
        "    return [tf.keras.metrics.R2Score(name='fit_quality')]",
        "hyperopt_space = {'learningRate': hp.loguniform('learningRate', -9, -3)}"])
    result = run_cli("sweep", "-u", str(settings), "--max-evals", "3", "--seed", "1", "--hparam", "nbEpoch=2",
                     timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep,) = (workdir / "experiments/examples/curve_fitting").glob("*_sweep_*")
    with open(sweep / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    values = [float(row["best_val_fit_quality"]) for row in rows]
    print("trials' best val_fit_quality (R2):", values)
    assert len(set(values)) == 3  # the trials differ, so picking the lowest would be seen
    best = json.loads((sweep / "sweep.json").read_text())["best"]
    assert best["best_value"] == pytest.approx(max(values))
