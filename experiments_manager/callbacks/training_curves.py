"""Draws training_curves.png from history.csv after every epoch."""

import csv

import keras

from experiments_manager.atomic import replaced_atomically
from experiments_manager.monitor import raw_name


class TrainingCurves(keras.callbacks.Callback):
    """Plots each logged quantity (train and validation together) per epoch.

    Reads the history CSV written by `HistoryCSV` (place this callback after
    it), so a resumed run plots its whole history.

    Args:
        history_csv: the CSV with one row per epoch.
        png: the image to (re)write, atomically.

    Example:

    ```python
    callbacks = [HistoryCSV("history.csv"), TrainingCurves("history.csv", "training_curves.png")]
    ```
    """

    def __init__(self, history_csv, png):
        super().__init__()
        self.history_csv = history_csv
        self.png = png

    def on_epoch_end(self, epoch, logs=None):
        plot_history(self.history_csv, self.png)


def read_history(history_csv):
    """Columns of the history CSV as floats: {name: [values...]}."""
    with open(history_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = {}
    for row in rows:
        for name, text in row.items():
            try:
                columns.setdefault(name, []).append(float(text))
            except (TypeError, ValueError):
                columns.setdefault(name, []).append(float("nan"))
    return columns


def plot_history(history_csv, png):
    """Writes one subplot per quantity, validation beside training."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = read_history(history_csv)
    epochs = [value + 1 for value in columns.pop("epoch", [])]
    names = sorted(name for name in columns if not name.startswith("val_"))
    if not epochs or not names:
        return
    figure = Figure(figsize=(5 * min(len(names), 3), 3.5 * ((len(names) + 2) // 3)))
    FigureCanvasAgg(figure)
    for index, name in enumerate(names):
        axes = figure.add_subplot((len(names) + 2) // 3, min(len(names), 3), index + 1)
        axes.plot(epochs, columns[name], label=f"train {name}")
        raw = raw_name(f"val_{name}")  # EMA runs: the weights being trained, validated beside the averages
        if f"val_{name}" in columns:
            axes.plot(epochs, columns[f"val_{name}"],
                      label=f"validation {name}" + (", EMA weights" if raw in columns else ""))
        if raw in columns:
            axes.plot(epochs, columns[raw], linestyle="--", label=f"validation {name}, raw weights")
        if "loss" in name and min(columns[name]) > 0:
            axes.set_yscale("log")
        axes.set_title(name)
        axes.set_xlabel("epoch")
        axes.legend()
    # fixed margins: tight_layout doubled the drawing time, which runs every epoch
    figure.subplots_adjust(left=0.08, right=0.97, bottom=0.15, top=0.88, wspace=0.3, hspace=0.5)
    with replaced_atomically(png) as tmp:
        figure.savefig(tmp, format="png")
