"""A classifier's test report: the confusion matrix, precision / recall / f1 / support per class, as tables and a PNG.

A model is a classifier here when its one output is class scores (a last dimension > 1) and its labels are class ids
(one per sample) or one-hot rows of the same width. The predicted class is the output's argmax. Precision of a class
never predicted, and recall of a class absent from the labels, are 0 (as scikit-learn's default); its support says
why. This module does not import TensorFlow.

Example:

```python
report = ClassificationReport.of(labels, outputs, class_names=["cat", "dog", "bird"])
report.confusion          # counts: rows the true class, columns the predicted one
print(report.table())
report.write(folder, title="my_run: version 3")   # per_class.csv, confusion_matrix.csv, confusion_matrix.png
```
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, cast

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

    from experiments_manager.utils.atomic import PathLike

MAX_ANNOTATED_CLASSES = 30  # beyond, the PNG's cells carry no numbers (unreadable)


def class_ids(labels: npt.ArrayLike, outputs: npt.ArrayLike) -> Optional[np.ndarray]:
    """The true class of each sample, or None when (labels, outputs) are not a classifier's.

    Args:
        labels: the labels, N or N x 1 class ids, or N x C one-hot rows.
        outputs: the model's output, N x C class scores (C > 1).

    Example:

    ```python
    class_ids(np.array([0, 2]), np.zeros((2, 3)))   # array([0, 2])
    ```
    """
    labels, outputs = np.asarray(labels), np.asarray(outputs)
    if outputs.ndim != 2 or outputs.shape[1] < 2 or labels.shape[:1] != outputs.shape[:1]:
        return None
    classes = outputs.shape[1]
    if labels.ndim == 2 and labels.shape[1] == classes:  # one-hot
        if np.isin(labels, (0, 1)).all() and np.all(labels.sum(axis=1) == 1):
            return cast(np.ndarray, labels.argmax(axis=1))  # numpy types argmax(axis=...) as Any
        return None
    ids = labels.reshape(-1) if labels.ndim == 1 or labels.shape[1:] == (1,) else None
    if ids is None or not np.all(ids == np.round(ids)) or ids.min(initial=0) < 0 or ids.max(initial=0) >= classes:
        return None
    return ids.astype(np.int64)


class ClassificationReport:
    """The confusion matrix of a classifier's predictions and the per-class table derived from it.

    Args:
        confusion: C x C counts, rows the true class, columns the predicted one.
        class_names: C names (default: the class ids as text).

    Attributes:
        per_class: one dict per class: class, precision, recall, f1, support.
        accuracy: the share of samples predicted right.
    """

    def __init__(self, confusion: npt.ArrayLike, class_names: Optional[Iterable[object]] = None) -> None:
        self.confusion = np.asarray(confusion, dtype=np.int64)
        count = self.confusion.shape[0]
        self.class_names = [str(name) for name in class_names] if class_names else [str(i) for i in range(count)]
        right = np.diag(self.confusion).astype(float)
        predicted, support = self.confusion.sum(axis=0), self.confusion.sum(axis=1)
        precision = np.divide(right, predicted, out=np.zeros(count), where=predicted > 0)
        recall = np.divide(right, support, out=np.zeros(count), where=support > 0)
        both = precision + recall
        f1 = np.divide(2 * precision * recall, both, out=np.zeros(count), where=both > 0)
        self.per_class: list[dict[str, Any]] = [
            {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(self.class_names, precision, recall, f1, support)]
        total = int(self.confusion.sum())
        self.accuracy = float(right.sum() / total) if total else 0.0

    @classmethod
    def of(cls, labels: npt.ArrayLike, outputs: npt.ArrayLike,
           class_names: Optional[Iterable[object]] = None) -> Optional[ClassificationReport]:
        """The report of `outputs` (N x C class scores) against `labels` (see `class_ids`), or None when they are
        not a classifier's.

        Args:
            labels: class ids or one-hot rows.
            outputs: class scores.
            class_names: C names, or None.
        """
        truth = class_ids(labels, outputs)
        if truth is None:
            return None
        count = np.asarray(outputs).shape[1]
        predicted = np.asarray(outputs).argmax(axis=1)
        confusion = np.zeros((count, count), dtype=np.int64)
        np.add.at(confusion, (truth, predicted), 1)
        return cls(confusion, class_names)

    def as_json(self) -> dict[str, Any]:
        """What evaluation.json holds of it."""
        return {"class_names": self.class_names, "accuracy": self.accuracy, "per_class": self.per_class,
                "confusion_matrix": self.confusion.tolist()}

    def table(self) -> str:
        """The per-class table and the confusion matrix, as printed."""
        width = max(5, *(len(name) for name in self.class_names))
        lines = [f"{'class':<{width}}  precision  recall      f1  support"]
        lines += [f"{row['class']:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}  "
                  f"{row['support']:7d}" for row in self.per_class]
        cell = max(len(str(int(self.confusion.max(initial=0)))), *(len(name) for name in self.class_names)) + 1
        lines += ["", "confusion matrix (rows: true class, columns: predicted class):",
                  " " * width + "".join(f"{name:>{cell}}" for name in self.class_names)]
        lines += [f"{name:<{width}}" + "".join(f"{count:>{cell}d}" for count in row)
                  for name, row in zip(self.class_names, self.confusion)]
        return "\n".join(lines)

    def write(self, folder: PathLike, title: str = "") -> None:
        """Writes `per_class.csv`, `confusion_matrix.csv` and `confusion_matrix.png` into `folder` (a temporary
        folder the caller renames into place)."""
        folder = Path(folder)
        (folder / "per_class.csv").write_text(_csv([["class", "precision", "recall", "f1", "support"]] + [
            [row["class"], f"{row['precision']:.6g}", f"{row['recall']:.6g}", f"{row['f1']:.6g}", row["support"]]
            for row in self.per_class]))
        (folder / "confusion_matrix.csv").write_text(_csv(
            [["true \\ predicted", *self.class_names]]
            + [[name, *map(int, row)] for name, row in zip(self.class_names, self.confusion)]))
        self.draw(folder / "confusion_matrix.png", title)

    def draw(self, png: PathLike, title: str = "") -> None:
        """The confusion matrix as a PNG: each cell's count, its colour the share of its true class."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        count = len(self.class_names)
        side = min(14.0, max(4.5, 0.55 * count + 2.5))
        figure = Figure(figsize=(side + 1.2, side))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot(1, 1, 1)
        support = self.confusion.sum(axis=1, keepdims=True)
        shares = np.divide(self.confusion, support, out=np.zeros(self.confusion.shape), where=support > 0)
        image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true class")
        ticks = np.arange(count)
        axes.set_xticks(ticks, self.class_names, rotation=45 if count > 8 else 0, ha="right" if count > 8 else "center")
        axes.set_yticks(ticks, self.class_names)
        axes.set_xlabel("predicted class")
        axes.set_ylabel("true class")
        if count <= MAX_ANNOTATED_CLASSES:
            for row in range(count):
                for column in range(count):
                    axes.text(column, row, str(self.confusion[row, column]), ha="center", va="center",
                              fontsize=9 if count > 12 else 11,
                              color="white" if shares[row, column] > 0.5 else "black")
        axes.set_title(f"{title}\naccuracy {self.accuracy:.4f} on {int(self.confusion.sum())} samples".strip(),
                       fontsize=10)
        figure.tight_layout()
        figure.savefig(png, format="png", dpi=100)


def _csv(rows: Iterable[Iterable[object]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()
