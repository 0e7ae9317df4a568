"""Metrics of a kind the labels make meaningless (`training/metric_kinds.py`), found on a compiled model's first
batch as the dry build finds them: one-hot metrics on class ids, binary metrics on N exclusive classes (a sparse
metric on one-hot labels makes Keras raise, which the dry build reports); the right kinds, 'accuracy' and multi-label
binary metrics pass."""

import numpy as np
import pytest

from experiments_manager.training.metric_kinds import wrong_kinds


def problems_of(metrics, labels, classes=3, activation="softmax", loss="mse"):
    """The problems `wrong_kinds` finds for `metrics` on a model of `classes` outputs and a batch of `labels`."""
    import keras

    inputs = keras.Input(shape=(4,))
    model = keras.Model(inputs, keras.layers.Dense(classes, activation=activation)(inputs))
    model.compile(loss=loss, metrics=metrics)
    x = np.random.default_rng(0).normal(size=(len(labels), 4)).astype(np.float32)
    predicted = model(x)
    model.compute_metrics(x, labels, predicted)
    return wrong_kinds(model, labels, np.asarray(predicted))


IDS = np.array([0, 2, 1, 1, 0, 2], np.int32)
ONE_HOT = np.eye(3, dtype=np.float32)[IDS]


@pytest.mark.claim("metrics that cannot be right for the labels the first batch shows are one line each before "
                   "training: one-hot metrics on class ids and the reverse, a binary metric on N classes",
                   note="(in process: categorical_accuracy by name and as an object on ids, "
                        "binary_accuracy and AUC on softmax scores; the right kinds, 'accuracy' and multi-label "
                        "binary metrics pass)")
def test_metrics_of_the_wrong_kind_are_named_with_the_one_that_fits():
    import keras

    found = problems_of(["categorical_accuracy", keras.metrics.CategoricalAccuracy(name="top")], IDS)
    assert found == [
        "get_metrics: categorical_accuracy: expected one-hot labels shaped like the outputs, got class ids (int32[6] "
        "labels, float32[6, 3] outputs): use 'sparse_categorical_accuracy' (or 'accuracy', which Keras picks from the "
        "shapes)",
        "get_metrics: top: expected one-hot labels shaped like the outputs, got class ids (int32[6] labels, "
        "float32[6, 3] outputs): use 'sparse_categorical_accuracy' (or 'accuracy', which Keras picks from the shapes)"]
    assert problems_of(["categorical_accuracy"], IDS[:, None])[0].startswith("get_metrics: categorical_accuracy: ")
    found = problems_of(["binary_accuracy", keras.metrics.AUC()], ONE_HOT)
    assert [line.split(":")[1].strip().rstrip("_0123456789") for line in found] == ["binary_accuracy", "auc"], found
    assert "a binary metric, expected one score per 0/1 label, got 3 exclusive class scores" in found[0]


def test_metrics_of_the_right_kind_pass():
    import keras

    assert problems_of(["sparse_categorical_accuracy", "accuracy"], IDS) == []
    assert problems_of(["categorical_accuracy", "accuracy", keras.metrics.CategoricalCrossentropy()], ONE_HOT) == []
    multi_label = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]], np.float32)  # independent sigmoids
    assert problems_of(["binary_accuracy", keras.metrics.AUC(multi_label=True)], multi_label,
                       activation="sigmoid") == []
    assert problems_of(["binary_accuracy"], np.array([0, 1, 1, 0], np.float32)[:, None], classes=1,
                       activation="sigmoid") == []
