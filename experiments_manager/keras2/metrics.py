"""The settings' metrics, compiled with the semantics Keras 2 gave them.

Keras 3 changed three things a settings file of the TF 2.14 era relies on
(each checked against `tf_keras`, Keras 2's last release, in
tests/e2e/test_keras2_settings.py):

- Keras 2 matched the ranks of `y_true` and `y_pred` before every metric
  function: labels of shape (batch,) against outputs (batch, 1) worked. Keras
  3's metric wrapper calls the function as is: `binary_crossentropy` raises,
  and `hinge`, `poisson`, `squared_hinge`, `kl_divergence`... broadcast to a
  (batch, batch) matrix and report a silently wrong value. Here bare functions,
  and the Keras metric objects that wrap one, get the ranks matched first
  (the rank-1 side gains the size-1 axis, so values stay per sample).
- A metric named by a class name ('AUC') was logged under the class's own
  name ('auc'), one named by a function or alias ('mae') under that string;
  Keras 3 logs 'AUC' as 'AUC', so `monitored_loss_name = 'val_auc'` would no
  longer be found.
- Keras 2 knew 'logcosh' and 'kullback_leibler_divergence' as metric names.

A one-output model given metrics keyed by layer names gets them as a list; a bare metric (`return 'mae'`, one
metric object) is a list of one, as Keras 2 took it.
"""

import functools
import logging
import re
from typing import Any, Callable

from experiments_manager.utils.errors import UserInputError

KERAS2_METRIC_NAMES = {"logcosh": "log_cosh", "kullback_leibler_divergence": "kl_divergence"}
# Keras 2 chose binary, categorical or sparse crossentropy for these from the shapes; Keras 3 knows none of them.
SHAPE_DEPENDENT_NAMES = ("crossentropy", "ce")
RESOLVED_BY_KERAS = ("accuracy", "acc")  # Keras picks binary/categorical/sparse accuracy from the shapes
RANK_MATCHED_MARK = "_experiments_manager_rank_matched"

_LOG = logging.getLogger(__name__)


def keras2_metrics(metrics: Any, model: Any, settings_name: str) -> Any:
    """What `model.compile(metrics=...)` gets for the settings' `get_metrics`.

    Args:
        metrics: what `get_metrics(model, loss)` returned (a list, a dict by
            output name, nested lists...).
        model: the Keras model (its output names).
        settings_name: the settings file name, for errors.

    Returns:
        the same structure, each metric as a Keras 3 object with Keras 2's semantics.

    Raises:
        UserInputError: a metric name that no Keras version knows.

    Example:

    ```python
    model.compile(loss="mse", metrics=keras2_metrics([tf.keras.metrics.binary_crossentropy], model, "s.py"))
    ```
    """
    if metrics is not None and not isinstance(metrics, (list, tuple, dict)):
        metrics = [metrics]  # `return 'mae'`, or one metric object: Keras 2 took it as a list of one
    return _map(_per_output(metrics, model), lambda metric: _keras2_metric(metric, settings_name))


def _per_output(metrics: Any, model: Any) -> Any:
    """Old settings return {layer name: metric} for one-output models: Keras 3 wants a list then."""
    if not isinstance(metrics, dict):
        return metrics
    output_names = list(getattr(model, "output_names", None) or [])
    if output_names and set(metrics) <= set(output_names):
        return metrics
    _LOG.info("get_metrics: keys %s are not output names %s: using the metrics for every output",
              sorted(metrics), output_names)
    return list(metrics.values())


def _map(structure: Any, function: Callable[[Any], Any]) -> Any:
    if isinstance(structure, dict):
        return {key: _map(value, function) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [_map(value, function) for value in structure]
    return function(structure) if structure is not None else None


def _keras2_metric(metric: Any, settings_name: str) -> Any:
    import keras

    name = None
    if isinstance(metric, str):
        if metric.lower() in RESOLVED_BY_KERAS:
            return metric
        name = metric
        metric = _named_metric(metric, settings_name)
        if isinstance(metric, keras.metrics.Metric):
            # 'mae' is logged 'mae'; a class name gets the class's own name ('AUC': 'auc'), without the
            # '_1' Keras adds when a second model of the process has one
            metric.name = snake_case(name) if type(metric).__name__ == name else name
    if isinstance(metric, keras.metrics.Metric):
        if isinstance(metric, keras.metrics.MeanMetricWrapper):
            metric._fn = rank_matched(metric._fn)  # the object keeps its name, direction and config
        return metric
    if callable(metric) and not isinstance(metric, type):
        wrapped = keras.metrics.MeanMetricWrapper(rank_matched(metric), name=name or _callable_name(metric))
        if getattr(keras.losses, getattr(metric, "__name__", ""), None) is metric:
            wrapped._direction = "down"  # what Keras 3 says of a metric wrapping one of its losses
        return wrapped
    return metric


def _named_metric(name: str, settings_name: str) -> Any:
    """The metric object or function a name stands for, in Keras 3 or in Keras 2."""
    import keras

    if name in SHAPE_DEPENDENT_NAMES:
        raise UserInputError(f"{settings_name}: get_metrics: {name!r}: Keras 2 picked the crossentropy from the "
                             "shapes, which Keras 3 does not; name it: 'binary_crossentropy', "
                             "'categorical_crossentropy' or 'sparse_categorical_crossentropy'")
    try:
        return keras.metrics.get(name)
    except ValueError:
        pass
    try:
        return keras.losses.get(KERAS2_METRIC_NAMES.get(name, name))  # Keras 2 took loss names as metrics
    except ValueError:
        raise UserInputError(f"{settings_name}: get_metrics: {name!r}: not a metric name Keras knows "
                             "(expected e.g. 'mae', 'binary_crossentropy', 'AUC' or a metric object)") from None


def _callable_name(function: Any) -> str:
    """A metric callable's name, as Keras 2 chose it: its `name` (a loss object), its `__name__` (for a
    `functools.partial`, the wrapped function's), else its class's."""
    return (getattr(function, "name", None) or getattr(function, "__name__", None)
            or getattr(getattr(function, "func", None), "__name__", None)  # functools.partial
            or snake_case(type(function).__name__))


def snake_case(class_name: str) -> str:
    """Keras' default metric name for a class: 'AUC' -> 'auc', 'BinaryAccuracy' -> 'binary_accuracy'."""
    words = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub("([a-z0-9])([A-Z])", r"\1_\2", words).lower()


def rank_matched(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function(y_true, y_pred, ...)` called with ranks matched as Keras 2 did.

    When one tensor has one more axis than the other and that axis has size 1
    ((batch, 1) against (batch,)), the other gains it. Idempotent.
    """
    if getattr(function, RANK_MATCHED_MARK, False):
        return function

    @functools.wraps(function, assigned=[name for name in functools.WRAPPER_ASSIGNMENTS if hasattr(function, name)])
    def matched(y_true: Any, y_pred: Any, *args: Any, **kwargs: Any) -> Any:
        return function(*match_ranks(y_true, y_pred), *args, **kwargs)

    setattr(matched, RANK_MATCHED_MARK, True)
    return matched


def match_ranks(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """(y_true, y_pred) with a size-1 last axis added to the one that lacks it."""
    from keras import ops

    y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
    true_rank, pred_rank = len(y_true.shape), len(y_pred.shape)
    if pred_rank == true_rank + 1 and y_pred.shape[-1] == 1:
        y_true = ops.expand_dims(y_true, -1)
    elif true_rank == pred_rank + 1 and y_true.shape[-1] == 1:
        y_pred = ops.expand_dims(y_pred, -1)
    return y_true, y_pred
