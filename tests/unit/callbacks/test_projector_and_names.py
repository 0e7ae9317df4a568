"""What the projector embeds for each kind of model, and the short names runs get (folders, HParams trial ids).

The files are read by a real TensorBoard in test_tensorboard.py; here, the choices for the shapes the
examples do not cover.
"""

import json

import numpy as np

import pytest

from experiments_manager.callbacks.projector import embedding_of, metadata_columns
from experiments_manager.run import endings, lifecycle
from experiments_manager.run.experiment import Experiment, folder_name

from conftest import hparams_statuses


@pytest.mark.claim('Projector: outputs of < 3 values shown beside inputs and labels')
def test_outputs_of_three_values_or_more_are_embedded_alone():
    outputs = np.random.default_rng(0).random((5, 4))
    tensor, name = embedding_of(np.zeros((5, 300)), outputs, np.eye(4)[[0, 1, 2, 3, 0]])
    assert name == "model_outputs" and tensor is outputs


@pytest.mark.claim('Projector: outputs of < 3 values shown beside inputs and labels')
def test_a_regression_output_is_shown_with_its_inputs_and_true_value():
    inputs, outputs, labels = np.arange(5.0)[:, None], np.arange(5.0)[:, None] * 2, np.arange(5.0)[:, None] * 3
    tensor, name = embedding_of(inputs, outputs, labels)
    assert name == "inputs_outputs_labels"
    np.testing.assert_array_equal(tensor, np.concatenate([inputs, outputs, labels], axis=1))


@pytest.mark.claim('Projector: outputs of < 3 values shown beside inputs and labels')
def test_without_usable_inputs_a_single_output_is_shown_with_its_label_and_error():
    """An image regression: the inputs are too wide to show (the callback passes None), 3 columns all the same."""
    outputs, labels = np.array([[1.0], [2.0]]), np.array([[1.5], [1.0]])
    tensor, name = embedding_of(None, outputs, labels)
    assert name == "outputs_labels_error"
    np.testing.assert_array_equal(tensor, [[1.0, 1.5, 0.5], [2.0, 1.0, 1.0]])


@pytest.mark.claim('Projector: model outputs of validation samples (EMA), index / label / prediction metadata')
def test_metadata_names_classes_for_one_hot_and_sparse_labels_and_values_for_regression():
    probabilities = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    one_hot = metadata_columns(probabilities, np.array([[0, 1, 0], [0, 0, 1]]))
    assert one_hot == {"index": ["0", "1"], "label": ["1", "2"], "prediction": ["1", "0"]}
    sparse = metadata_columns(probabilities, np.array([[1.0], [2.0]]))
    assert sparse == {"index": ["0", "1"], "label": ["1", "2"], "prediction": ["1", "0"]}
    regression = metadata_columns(np.array([[0.25], [1.5]]), np.array([[0.3], [1.4]]))
    assert regression == {"index": ["0", "1"], "label": ["0.3", "1.4"], "prediction": ["0.25", "1.5"]}
    # three regression targets are not three classes
    assert metadata_columns(probabilities, np.array([[0.2, 1.3, 0.1], [0.5, 0.5, 0.0]])) == {"index": ["0", "1"]}
    assert metadata_columns(np.array([[0.25]]), None) == {"index": ["0"], "prediction": ["0.25"]}  # text labels


@pytest.mark.claim('folder name `<session>_<time>_<key>=<value>...` of the hparams set on the command line')
def test_folder_names_carry_the_hparams_set_for_the_run_rounded():
    name = folder_name("my_test", "2026-11-22--10-00-05", {"learningRate": 0.0024453712, "hiddenNeurons": 36})
    assert name == "my_test_2026-11-22--10-00-05_learningRate=0.002445_hiddenNeurons=36"
    assert folder_name("my_test", "2026-11-22--10-00-05", {}) == "my_test_2026-11-22--10-00-05"


@pytest.mark.claim('HParams: trial ID `10:00:05 lr=0.1 (11-22 my_test)`, one row per run')
def test_the_trial_id_puts_what_tells_runs_apart_first(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({
        "started": "2026-11-22T10:00:05+00:00", "session_name": "my_test",
        "hparam_overrides": {"learningRate": 0.0024453712, "nbEpoch": 2}}))
    assert Experiment(tmp_path).label() == "10:00:05 learningRate=0.002445 nbEpoch=2 (11-22 my_test)"
    (tmp_path / "run.json").write_text(json.dumps({"started": "2026-11-22T10:00:05+00:00", "repeat": "1"}))
    assert Experiment(tmp_path).label() == "10:00:05 #1 (11-22)"  # a second run started in the same second


@pytest.mark.claim('HParams: status from run.json (Success, Failure; Unknown while running or interrupted)')
def test_the_hparams_status_follows_run_json_through_a_failure_and_a_resume(tmp_path):
    experiment = Experiment(tmp_path)
    experiment.write_run_info({"status": "running"})
    experiment.logs_dir.mkdir()
    experiment.record.end(endings.failed("boom"))
    assert hparams_statuses(experiment.logs_dir) == ["STATUS_FAILURE"]
    lifecycle.resumed(experiment, ["experiments-manager", "train", "--resume", str(tmp_path)])
    assert hparams_statuses(experiment.logs_dir) == []  # running again: TensorBoard reads "Unknown", not "Failure"
    experiment.record.end(endings.signalled(15, "SIGTERM"))
    assert hparams_statuses(experiment.logs_dir) == []  # resumable
    experiment.record.end(endings.finished())
    assert hparams_statuses(experiment.logs_dir) == ["STATUS_SUCCESS"]
