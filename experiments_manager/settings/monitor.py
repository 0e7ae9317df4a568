"""Which way the monitored quantity improves. No TensorFlow here: sweeps score trials with it.

The direction is decided as Keras decides it, from the most to the least
specific source:

1. the settings' `monitored_loss_mode` ('min' or 'max'), when not 'auto';
2. a loss ('loss', 'val_loss', '<output>_loss'): minimised;
3. the direction the Keras metric object itself carries (Keras 3 metrics such
   as `R2Score`, `PearsonCorrelation` or `FBetaScore` say 'up'; metrics wrapping a
   Keras loss say 'down'), found by the logged name;
4. names alone: Keras 2's rule ('acc' in the name, or a name starting with
   'fmeasure'), and the default names of Keras 3's maximised metrics ('auc',
   'r2_score', 'precision', ... also after an output name, 'out_auc', or with
   Keras' '_1' suffix): maximised;
5. otherwise minimised, with a warning telling how to say otherwise.

A run records the mode it used in run.json (`monitor_mode`), so later readers
(sweeps, listings) do not guess again.
"""

import re
from typing import Optional

MODES = ("min", "max")
AUTO = "auto"
RAW_SUFFIX = "_raw"  # val_<name>_raw: the same quantity with the raw (non-EMA) weights

# The default names of Keras 3's metrics whose direction is 'up' (without an object at hand).
MAXIMIZED_NAMES = (
    "auc", "precision", "recall", "f1_score", "fbeta_score", "iou", "mean_iou", "binary_iou", "one_hot_iou",
    "one_hot_mean_iou", "r2_score", "cosine_similarity", "pearson_correlation", "concordance_correlation",
    "true_positives", "true_negatives", "precision_at_recall", "recall_at_precision",
    "sensitivity_at_specificity", "specificity_at_sensitivity",
)


def raw_name(name: str) -> str:
    """The log name of a quantity measured with the raw weights: 'val_loss' -> 'val_loss_raw'."""
    return name + RAW_SUFFIX


def is_raw(name: str) -> bool:
    """True for 'val_<name>_raw'."""
    return name.startswith("val_") and name.endswith(RAW_SUFFIX)


class MonitorMode:
    """A decided direction and why.

    Attributes:
        mode: 'min' or 'max'.
        reason: how it was decided (for the log), e.g. "R2Score's direction".
        guessed: True when nothing said which way is better (rule 5).
    """

    def __init__(self, mode: str, reason: str, guessed: bool = False) -> None:
        self.mode = mode
        self.reason = reason
        self.guessed = guessed

    def describe(self, monitor: str) -> str:
        better = "higher" if self.mode == "max" else "lower"
        return f"{monitor}: {better} is better ({self.reason})"


def metric_name(monitor: str) -> str:
    """The metric behind a logged name: 'val_r2_score_raw' -> 'r2_score'."""
    name = monitor[: -len(RAW_SUFFIX)] if is_raw(monitor) else monitor
    return name[len("val_"):] if name.startswith("val_") else name


def _named_maximized(name: str) -> bool:
    """Keras 2's rule, or a Keras 3 maximised metric's default name (after an output name, before a '_1')."""
    name = re.sub(r"_\d+$", "", name.lower())
    return ("acc" in name or name.startswith("fmeasure")
            or any(name == known or name.endswith("_" + known) for known in MAXIMIZED_NAMES))


def resolve_monitor_mode(monitor: str, explicit: str = AUTO,
                         directions: Optional[dict[str, str]] = None) -> MonitorMode:
    """Decides whether `monitor` is minimised or maximised.

    Args:
        monitor: the logged name, e.g. 'val_loss' or 'val_r2_score'.
        explicit: the settings' `monitored_loss_mode`: 'min', 'max' or 'auto'.
        directions: dict metric name -> 'up' / 'down', from the compiled
            Keras metric objects that carry one (None: no model at hand).

    Returns:
        a `MonitorMode`.

    Example:

    ```python
    resolve_monitor_mode("val_r2_score", directions={"r2_score": "up"}).mode  # 'max'
    resolve_monitor_mode("val_my_score", explicit="max").mode               # 'max'
    ```
    """
    if explicit in MODES:
        return MonitorMode(explicit, f"monitored_loss_mode = {explicit!r}")
    name = metric_name(monitor)
    if name == "loss" or name.endswith("_loss"):
        return MonitorMode("min", "a loss")
    direction = (directions or {}).get(name)
    if direction in ("up", "down"):
        return MonitorMode("max" if direction == "up" else "min", f"the Keras metric {name!r} says {direction!r}")
    if _named_maximized(name):
        return MonitorMode("max", "Keras' name for a metric that grows")
    return MonitorMode("min", "no direction known: minimised as Keras 2 did; set monitored_loss_mode = 'max' "
                              "in the settings if higher is better", guessed=True)


def monitor_mode(name: str, recorded: Optional[str] = None) -> str:
    """'max' or 'min' for a logged name, without a model (a run's recorded mode wins).

    Args:
        name: the monitored name.
        recorded: the `monitor_mode` a run recorded in run.json, if any.

    Example:

    ```python
    monitor_mode("val_accuracy")            # 'max'
    monitor_mode("val_loss")                # 'min'
    monitor_mode("val_my_score", "max")     # 'max'
    ```
    """
    if recorded in MODES:
        return recorded
    return resolve_monitor_mode(name).mode
