"""Metrics that cannot be right for the labels and outputs a first batch shows, found before training.

Keras computes a metric on whatever shapes it is given: `categorical_accuracy` on integer labels compares the
label's single value with the index of the top score and reports a meaningless accuracy; a sparse metric on
one-hot labels, or a binary one on the scores of N exclusive classes, likewise. The dry build
(`dry_build.py`) hands this module the compiled metrics with the first batch's labels and outputs; each metric of
the wrong kind is one line naming it, the shapes seen and the metric that fits.

- one-hot metrics (`categorical_accuracy`, `top_k_categorical_accuracy`, `categorical_crossentropy`) need labels
  shaped like the outputs (N > 1 classes);
- sparse metrics (`sparse_categorical_accuracy`, `sparse_top_k_categorical_accuracy`,
  `sparse_categorical_crossentropy`) need class ids: one label per sample, not a one-hot row;
- binary metrics (`binary_accuracy`, `binary_crossentropy`, `AUC`, `Precision`, `Recall`, ...) need one score per
  label: on N > 1 exclusive classes (class-id labels, or scores that sum to 1 per sample: a softmax) they are
  meaningless; multi-label outputs (independent sigmoids against 0/1 rows) are theirs.

`'accuracy'` and `'crossentropy'` are left to Keras, which picks the kind from the shapes.

Example:

```python
problems = wrong_kinds(model, y, predicted)
# ["get_metrics: categorical_accuracy: expected one-hot labels shaped like the outputs float32[32, 3], got class ids
#   int32[32]: use 'sparse_categorical_accuracy' (or 'accuracy', which Keras picks from the shapes)"]
```
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

ONE_HOT = {"categorical_accuracy": "sparse_categorical_accuracy",
           "top_k_categorical_accuracy": "sparse_top_k_categorical_accuracy",
           "categorical_crossentropy": "sparse_categorical_crossentropy"}
SPARSE = {sparse: one_hot for one_hot, sparse in ONE_HOT.items()}
BINARY_FUNCTIONS = frozenset({"binary_accuracy", "binary_crossentropy", "binary_focal_crossentropy"})
BINARY_CLASSES = frozenset({"AUC", "Precision", "Recall", "TruePositives", "TrueNegatives", "FalsePositives",
                            "FalseNegatives", "PrecisionAtRecall", "RecallAtPrecision", "SensitivityAtSpecificity",
                            "SpecificityAtSensitivity", "BinaryIoU"})
_SOFTMAX_TOLERANCE = 1e-3  # how far from 1 a sample's scores may sum and still be a softmax


def wrong_kinds(model: Any, y: Any, predicted: Any) -> list[str]:
    """One line per compiled metric of `model` whose kind does not fit the labels `y` and the outputs `predicted` of
    one batch (after `model.compute_metrics` built them); [] when all fit or the structure is not one Keras shows.

    Args:
        model: the compiled Keras model, its metrics built on that batch.
        y: the batch's labels (an array, or a list / dict per output).
        predicted: the model's outputs on the batch, in the same structure.
    """
    from keras import tree

    built = getattr(getattr(model, "_compile_metrics", None), "_flat_metrics", None)
    if not built:
        return []
    labels, outputs = tree.flatten(y), tree.flatten(predicted)
    if len(labels) != len(outputs) or len(built) != len(outputs):
        return []
    problems = []
    for metrics, label, output in zip(built, labels, outputs):
        for metric in getattr(metrics, "metrics", None) or []:
            problem = _wrong_kind(metric, np.asarray(label), np.asarray(output))
            if problem is not None:
                problems.append(f"get_metrics: {problem}")
    return problems


def _wrong_kind(metric: Any, label: np.ndarray, output: np.ndarray) -> Optional[str]:
    kind = _function_name(metric)
    classes = output.shape[-1] if output.ndim >= 2 else 1
    ids = label.ndim < output.ndim or (label.ndim == output.ndim and label.shape[-1] == 1 and classes > 1)
    one_hot = label.shape == output.shape and classes > 1
    seen = f"{_shape(label)} labels, {_shape(output)} outputs"
    if kind in ONE_HOT and ids:
        return (f"{metric.name}: expected one-hot labels shaped like the outputs, got class ids ({seen}): use "
                f"{ONE_HOT[kind]!r} (or 'accuracy', which Keras picks from the shapes)")
    if kind in SPARSE and one_hot:
        return (f"{metric.name}: expected class ids (one per sample), got one-hot labels ({seen}): use "
                f"{SPARSE[kind]!r} (or 'accuracy', which Keras picks from the shapes)")
    binary = kind in BINARY_FUNCTIONS or type(metric).__name__ in BINARY_CLASSES
    if binary and classes > 1 and (ids or _exclusive(output)):
        return (f"{metric.name}: a binary metric, expected one score per 0/1 label, got {classes} exclusive class "
                f"scores ({seen}): use 'sparse_categorical_accuracy' for class ids, 'categorical_accuracy' for "
                "one-hot labels (or 'accuracy')")
    return None


def _function_name(metric: Any) -> str:
    """The name of the metric function a Keras metric object computes (`MeanMetricWrapper._fn`:
    `CategoricalAccuracy`'s is 'categorical_accuracy'), '' for another metric."""
    function = getattr(metric, "_fn", None)
    name = getattr(function, "__name__", None) or getattr(getattr(function, "func", None), "__name__", None)
    return name or ""


def _exclusive(output: np.ndarray) -> bool:
    """Whether every sample's scores sum to 1 (a softmax over exclusive classes)."""
    if output.ndim < 2 or not np.issubdtype(output.dtype, np.floating) or output.size == 0:
        return False
    sums = output.astype(np.float64).sum(axis=-1)
    return bool(np.all(np.abs(sums - 1.0) < _SOFTMAX_TOLERANCE) and np.all(output >= 0))


def _shape(value: np.ndarray) -> str:
    return f"{value.dtype.name}{list(value.shape)}"
