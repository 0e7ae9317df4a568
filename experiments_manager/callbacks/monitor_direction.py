"""Decides, once the model's metrics exist, whether the monitored quantity is minimised or maximised.

Keras 3's own monitor callbacks decide their direction at their first epoch end too
(`MonitorCallback._set_monitor_op`, "delay setup until the model's metrics are all built").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable, Optional

import keras

from experiments_manager.settings.monitor import resolve_monitor_mode

if TYPE_CHECKING:
    from experiments_manager.callbacks.best_value import BestValue
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings import Settings
    from experiments_manager.settings.monitor import MonitorMode

_LOG = logging.getLogger(__name__)


class ResolveMonitorMode(keras.callbacks.Callback):
    """Sets the direction of the monitored quantity for the run's best value and Keras monitors.

    Keras builds the compiled metrics during the first steps; at the first
    epoch end this callback reads the direction each metric object carries
    (`experiments_manager.settings.monitor` lists the rules) and gives it to the
    `BestValue` and to the Keras monitor callbacks (early stopping, LR on
    plateau), which read their `mode` at their own first epoch end. Place it
    before them. The decision is logged and handed to `on_resolved`.

    Args:
        best: the run's `BestValue`.
        monitors: Keras `MonitorCallback`s watching the same quantity.
        explicit: the settings' `monitored_loss_mode` ('auto', 'min' or 'max').
        on_resolved: function `MonitorMode` -> None (records it), or None.

    Example:

    ```python
    best = BestValue("val_r2_score")
    stopper = keras.callbacks.EarlyStopping("val_r2_score", patience=3)
    model.fit(..., callbacks=[ResolveMonitorMode(best, [stopper]), TrackBestValue(best, "s.py"), stopper])
    ```
    """

    def __init__(self, best: BestValue, monitors: Iterable[Any] = (), explicit: str = "auto",
                 on_resolved: Optional[Callable[[MonitorMode], object]] = None) -> None:
        super().__init__()
        self.best = best
        self.monitors = list(monitors)
        self.explicit = explicit
        self.on_resolved = on_resolved
        self.resolved: Optional[MonitorMode] = None

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        if self.resolved is not None:  # decided once per `fit` series on the same callbacks
            return
        self.resolved = resolve_monitor_mode(self.best.monitor, self.explicit, metric_directions(self.model))
        self.best.mode = self.resolved.mode
        for monitor in self.monitors:
            monitor.mode = self.resolved.mode
        (_LOG.warning if self.resolved.guessed else _LOG.info)("Monitoring %s", self.resolved.describe(self.best.monitor))
        if self.on_resolved is not None:
            self.on_resolved(self.resolved)


def metric_directions(model: Any) -> dict[str, str]:
    """{metric name: 'up' | 'down'} for the model's metric objects that carry a direction (Keras 3)."""
    found: dict[str, str] = {}
    pending = list(getattr(model, "metrics", None) or [])
    while pending:
        metric = pending.pop()
        inner = getattr(metric, "metrics", None)  # CompileMetrics, MetricsList
        if isinstance(inner, (list, tuple)):
            pending.extend(inner)
        direction = getattr(metric, "_direction", None)
        if direction in ("up", "down"):
            found[metric.name] = direction
    return found


def monitor_mode_resolver(best: BestValue, experiment: Experiment, settings: Settings,
                          monitors: Iterable[Any] = ()) -> ResolveMonitorMode:
    """The `ResolveMonitorMode` of a run: the settings' `monitored_loss_mode`, the decision written to run.json."""
    return ResolveMonitorMode(best, monitors, settings.training.monitor_mode,
                              on_resolved=lambda resolved: experiment.record.monitor_mode(resolved.mode))
