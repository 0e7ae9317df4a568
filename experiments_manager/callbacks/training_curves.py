"""Draws training_curves.png from history.csv as epochs end (at most every `min_interval` seconds; the last one at
once) and at the end."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

import keras

from experiments_manager.run.history_rows import examine
from experiments_manager.utils.atomic import replaced_atomically
from experiments_manager.utils.background import yield_to_training
from experiments_manager.utils.environment_failures import both_storage_failures, environment_errno
from experiments_manager.utils.epochs import shown_epoch
from experiments_manager.settings.monitor import metric_name, raw_name

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.ticker import LogFormatter

    from experiments_manager.callbacks.best_value import BestValue
    from experiments_manager.utils.atomic import PathLike

LEARNING_RATE = "learning_rate"
Best = tuple[str, int, Optional[float]]  # (monitored name, epoch from 1, value): the best epoch marked
_LOG = logging.getLogger(__name__)
_NO_BEST = object()  # a drawing asked for before any best value (None means: nothing pending)
_MATPLOTLIB = threading.Lock()  # matplotlib's font and text caches are not thread-safe: one drawing at a time


class TrainingCurves(keras.callbacks.Callback):
    """Plots each logged quantity per epoch: train, validation (EMA and raw weights), learning rate.

    Reads the history CSV written by `HistoryCSV` (place this callback after
    it, and after `TrackBestValue`), so a resumed run plots its whole history.
    The best epoch of the monitored quantity is marked in every panel.

    Drawing takes a few tenths of a CPU-second, so it happens in a background
    thread while the next epoch trains, and at most once every `min_interval`
    seconds: the first epoch's at once, then the first epoch that ends
    `min_interval` seconds after the last drawing was asked for. The last
    epoch `fit` was asked for is drawn at its end at once, while the end of
    training does its other work. The end of
    training draws the last epoch (if not drawn yet) and waits for it, so the
    finished run's image shows every epoch; a run that `fit` left by raising
    (a stop signal) calls `finish()` for the same. A drawing still pending
    when a new one is asked for is replaced by the newer one. A drawing that
    fails is logged, never raised; one that the storage failed (a full disk, a
    read-only or failing file system) is held back until `finish`, and said
    there only if no later drawing succeeded and the run is not ending on that
    failure itself (whose one line says it).

    Args:
        history_csv: the CSV with one row per epoch.
        png: the image to (re)write, atomically.
        best: the run's `BestValue`, or None (no best epoch marked).
        title: the figure's title (default: none), e.g. the experiment's name.
        min_interval: seconds between two drawings during training (default 30.0; 0: after every epoch). On
            2 cores each drawing slows training by its CPU, ~0.3 s.
        check_writer: raises `LeaseLost` once the run lost its folder (`Experiment.check_writer`), checked before a
            drawing starts and before it replaces the image: a drawing in flight when the run's node froze is not
            committed after the thaw (default: never raises).

    Example:

    ```python
    callbacks = [HistoryCSV("history.csv"), TrackBestValue(best, "settings.py"),
                 TrainingCurves("history.csv", "training_curves.png", best, title="my_test lr=0.1")]
    ```
    """

    def __init__(self, history_csv: PathLike, png: PathLike, best: Optional[BestValue] = None,
                 title: Optional[str] = None, min_interval: float = 30.0,
                 check_writer: Optional[Callable[[], None]] = None) -> None:
        super().__init__()
        self.check_writer: Callable[[], None] = check_writer or (lambda: None)
        self.history_csv = history_csv
        self.png = png
        self.best = best
        self.title = title
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._pending: Optional[object] = None  # the newest drawing asked for, not started yet
        self._worker: Optional[threading.Thread] = None
        self._asked_at: Optional[float] = None  # time.monotonic() of the last drawing asked for
        # the best of an epoch not drawn (too soon after the last drawing), else None
        self._undrawn: Optional[object] = None
        # the last drawing's storage failure (held back until `finish`), else None
        self._storage_failure: Optional[Exception] = None
        self._paced_by_image = False  # `pace_across_sessions`
        self.draw_at_end = True  # the end of `fit` and `finish` draw the epochs not drawn yet

    def pace_across_sessions(self, final: bool) -> None:
        """For a federated client, whose every round is a session of its own (one `fit` of its local epochs): the
        image is redrawn at most every `min_interval` seconds counted from its last writing, whichever session wrote
        it, and the epochs left undrawn are drawn at the end only when `final` (the federation's last round, or
        unknown). Its rounds then cost it no drawing each (~0.3 CPU-s, on the round's critical path)."""
        self._paced_by_image, self.draw_at_end = True, final

    def on_train_begin(self, logs: Optional[dict[str, Any]] = None) -> None:
        self._asked_at = self._image_written_at() if self._paced_by_image else None
        self._undrawn = None

    def _image_written_at(self) -> Optional[float]:
        """When the image was last written, on `time.monotonic()`'s clock, or None (not drawn yet)."""
        try:
            age = time.time() - os.stat(self.png).st_mtime
        except OSError:
            return None
        return time.monotonic() - max(0.0, age)

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        best = _NO_BEST
        if self.best is not None and self.best.epoch is not None:
            best = (self.best.monitor, shown_epoch(self.best.epoch), self.best.value)
        now = time.monotonic()
        # drawn while the end's work runs
        last = self.draw_at_end and epoch + 1 >= (self.params or {}).get("epochs", float("inf"))
        if not last and self._asked_at is not None and now - self._asked_at < self.min_interval:
            self._undrawn = best
            return
        self._asked_at, self._undrawn = now, None
        self._ask(best)

    def on_train_end(self, logs: Optional[dict[str, Any]] = None) -> None:
        self.finish()

    def finish(self, ending: Optional[BaseException] = None) -> None:
        """Draws the epochs not drawn yet, if any, and waits for the drawing: what the end of training does, and
        what a run calls when `fit` raised instead (a stop signal, a stalled input), as Keras then skips
        `on_train_end`. Does nothing when every epoch is drawn.

        Args:
            ending: the error ending the run, if any (default None). When it is the storage's failure, a drawing
                the storage failed is not said again.
        """
        if self._undrawn is not None and self.draw_at_end:
            self._ask(self._undrawn)
            self._undrawn = None
        worker = self._worker
        if worker is not None:
            worker.join()
        failure, self._storage_failure = self._storage_failure, None
        if failure is not None and not both_storage_failures(failure, ending):  # the failure is the storage's
            _LOG.warning("%s not drawn (%s: %s)", self.png, type(failure).__name__, failure)

    def _ask(self, best: object) -> None:
        with self._lock:
            self._pending = best
            if self._worker is None:  # not a daemon: an interrupted run exits after the drawing, not in its middle
                self._worker = threading.Thread(target=self._draw_pending, name="training-curves")
                self._worker.start()

    def _draw_pending(self) -> None:
        yield_to_training()  # the disk: training's first (not the CPU: the drawing holds the GIL)
        while True:
            with self._lock:
                if self._pending is None:
                    self._worker = None
                    return
                best, self._pending = self._pending, None
            try:
                self.check_writer()
                with _MATPLOTLIB:  # several runs in one process (federated simulation clients)
                    plot_history(self.history_csv, self.png, title=self.title,
                                 best=None if best is _NO_BEST else cast(Best, best), before_commit=self.check_writer)
            except Exception as error:  # noqa: BLE001
                if environment_errno(error) is None:
                    _LOG.warning("%s not drawn (%s: %s)", self.png, type(error).__name__, error)
                else:  # a full or failing disk: said once, at `finish`, unless a later drawing succeeds
                    self._storage_failure = error
            else:
                self._storage_failure = None


def read_history(history_csv: PathLike) -> dict[str, list[float]]:
    """Columns of the history CSV's good rows as floats (`run.history_rows.examine`: an earlier engine's epochs
    counted from 1 too): {name: [values...]}."""
    _, rows, _ = examine(history_csv)
    columns: dict[str, list[float]] = {}
    for row in rows:
        for name, text in row.items():
            try:
                columns.setdefault(name, []).append(float(text))
            except (TypeError, ValueError):
                columns.setdefault(name, []).append(float("nan"))
    return columns


def panel_names(columns: Mapping[str, object]) -> list[str]:
    """The quantities drawn, one panel each: the loss first, the learning rate last."""
    names = [name for name in columns if not name.startswith("val_") and name != "epoch"]
    return sorted(names, key=lambda name: (name == LEARNING_RATE, name != "loss", name))


def plot_history(history_csv: PathLike, png: PathLike, title: Optional[str] = None, best: Optional[Best] = None,
                 before_commit: Callable[[], None] = lambda: None) -> None:
    """Writes one panel per quantity, validation beside training, the best epoch marked.

    Args:
        history_csv: the CSV written by `HistoryCSV` (column `epoch` counted from 1).
        png: the image to write.
        title: the figure's title, or None.
        best: (monitored name, epoch from 1, value), or None.
        before_commit: called once the image is drawn and durable, just before it replaces `png`; what it raises
            leaves `png` as it was (default: nothing).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    columns = read_history(history_csv)
    epochs = columns.get("epoch", [])
    names = panel_names(columns)
    if not epochs or not names:
        return
    ncols = min(len(names), 3)
    nrows = (len(names) + 2) // 3
    figure = Figure(figsize=(5 * ncols, 3.6 * nrows + 0.6))
    FigureCanvasAgg(figure)
    for index, name in enumerate(names):
        axes = figure.add_subplot(nrows, ncols, index + 1)
        _panel(axes, name, epochs, columns, best)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        figure.suptitle(title, fontsize=11)
    # fixed margins: tight_layout doubled the drawing time, which runs every epoch
    figure.subplots_adjust(left=0.09, right=0.97, bottom=0.13 / nrows, top=1 - 0.6 / (3.6 * nrows + 0.6) - 0.06,
                           wspace=0.35, hspace=0.55)
    with replaced_atomically(png, before_commit) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def _plain_log_formatter(**options: Any) -> LogFormatter:
    """Matplotlib's log-axis labelling (which ticks get a label), written as plain numbers."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):
        def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
            return f"{x:g}"

    return PlainLogFormatter(**options)


def _panel(axes: Axes, name: str, epochs: list[float], columns: Mapping[str, list[float]],
           best: Optional[Best]) -> None:
    if name == LEARNING_RATE:
        axes.plot(epochs, columns[name], color="tab:gray", label="learning rate")
        label = "learning rate"
    else:
        axes.plot(epochs, columns[name], label=f"train {name}")
        validation, raw = f"val_{name}", raw_name(f"val_{name}")  # EMA runs: the raw weights validated beside
        if validation in columns:
            axes.plot(epochs, columns[validation],
                      label=f"validation {name}" + (", EMA weights" if raw in columns else ""))
        if raw in columns:  # validated on a schedule (`raw_validation_freq`): a line through the epochs it has
            shown = [(epoch, value) for epoch, value in zip(epochs, columns[raw]) if value == value]  # not NaN
            axes.plot([epoch for epoch, _ in shown], [value for _, value in shown], linestyle="--",
                      marker="." if len(shown) < len(epochs) else None, label=f"validation {name}, raw weights")
        label = name
    values = [value for value in columns[name] if value == value]
    if (name == LEARNING_RATE or "loss" in name) and values and min(values) > 0:
        axes.set_yscale("log")
        # plain numbers ('0.2'): the default 10^x labels go through mathtext, half the drawing time
        axes.yaxis.set_major_formatter(_plain_log_formatter())
        axes.yaxis.set_minor_formatter(_plain_log_formatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    if best is not None:
        monitor, epoch, value = best
        axes.axvline(epoch, color="tab:red", linestyle=":", linewidth=1)
        if metric_name(monitor) == name and value is not None:
            axes.plot([epoch], [value], marker="o", color="tab:red", linestyle="none",
                      label=f"best {monitor} {value:.4g} (epoch {epoch})")
    axes.set_title(label, y=1.0)  # a fixed position: matplotlib otherwise measures every tick label to place it
    axes.set_xlabel("epoch")
    axes.set_ylabel(label)
    axes.legend(fontsize=8)
