"""A run's evaluations: each `evaluate` writes its own folder, `RUN/evaluations/<stamp>-v<N>/evaluation.json`, whole
(a temporary folder renamed), and never the run's run.json: an evaluation takes no lease, so a run is evaluated while
it trains, and two evaluations never wait on each other. `list` and `diff` read the newest here; a run an earlier
engine evaluated has them in run.json's `evaluations` too (read when the folder has none). `Evaluation` is the
evaluation (evaluation.json's one definition: `as_json`) and `save_evaluation` its writer (`evaluate --output DIR`
writes the same folder in DIR).

Example:

```python
newest_evaluation(Path("experiments/digits/my_test_2026-11-23--10-00-00"), run_info)
# {'version': 3, 'data': 'test pipeline', 'metrics': {'loss': 0.21, ...}, 'at': '...', 'report': 'evaluations/...'}
```
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, Mapping, Optional, TypedDict, cast

import numpy as np

from experiments_manager.run.classification_report import ClassificationReport
from experiments_manager.run.names import folder_stamp, now
from experiments_manager.run.version_records import VersionRecord, version_summary
from experiments_manager.utils.atomic import PathLike, folder_replaced_atomically, remove_tree_atomically
from experiments_manager.utils.signals import process_alive

EVALUATIONS_FOLDER = "evaluations"
EVALUATION_FILE = "evaluation.json"
_IN_PROGRESS = ".tmp-evaluation-"  # then the host and pid of the evaluation writing it


class EvaluationEntry(TypedDict, total=False):
    """The newest evaluation as `list` and `diff` show it (run.json's `evaluations` entries had this form).

    Args:
        version: the version evaluated; data: `test pipeline` or the folder given; metrics: name -> value;
        at: when it ended (ISO 8601); report: its folder, relative to the run.
    """

    version: int
    data: str
    metrics: dict[str, float]
    at: str
    report: str


def in_progress_name() -> str:
    """The temporary name an evaluation writes its folder under: host and pid, so that only a dead writer's of this
    host is removed (`remove_dead_evaluations`), never a live one's on another node."""
    return f"{_IN_PROGRESS}{socket.gethostname()}-{os.getpid()}"


def remove_dead_evaluations(folder: Path) -> None:
    """Removes the temporary folders of evaluations killed mid-write on this host (their pid no longer alive)."""
    prefix = f"{_IN_PROGRESS}{socket.gethostname()}-"
    for entry in folder.iterdir() if folder.is_dir() else ():
        pid = entry.name.removeprefix(prefix)
        if entry.name.startswith(prefix) and pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            remove_tree_atomically(entry)


def newest_evaluation(root: Path, info: Mapping[str, Any]) -> Optional[EvaluationEntry]:
    """The newest readable evaluation of the run at `root` (its `evaluations/` folders by name, which starts with
    the time), or the newest of run.json's `evaluations` (`info`) for a run an earlier engine evaluated, or None."""
    folder = root / EVALUATIONS_FOLDER
    names = sorted((entry.name for entry in folder.iterdir() if not entry.name.startswith(".")),
                   reverse=True) if folder.is_dir() else []
    for name in names:
        try:
            saved = json.loads((folder / name / EVALUATION_FILE).read_text())
        except (OSError, ValueError):
            continue  # a folder the user damaged or emptied: the one before it
        if isinstance(saved, dict) and isinstance(saved.get("metrics"), dict):
            return cast(EvaluationEntry, {"version": saved.get("version"), "data": saved.get("data"),
                                          "metrics": saved["metrics"], "at": saved.get("at"),
                                          "report": f"{EVALUATIONS_FOLDER}/{name}"})
    entries = info.get("evaluations")
    if isinstance(entries, list) and entries and isinstance(entries[-1], dict):
        return cast(EvaluationEntry, entries[-1])
    return None


class Evaluation:
    """One evaluation of a run's version.

    Attributes:
        run: the experiment folder.
        version: the version evaluated; `record`: its version record (epoch, monitored value) or {}; `best`:
            whether it holds the run's best epoch.
        data: 'test pipeline', or the folder given.
        metrics: the compiled loss and metrics (name -> float), as `model.evaluate` reports them.
        samples: how many test samples were read.
        report: the `ClassificationReport` of a classifier, else None.
        folder: where it was saved (`RUN/evaluations/<stamp>-v<N>/`, or in the folder given), None when not saved.
        at: when (ISO time).
        unsaved: why it could not be saved (one line: the folder and the disk's word), or None.
    """

    def __init__(self, run: PathLike, version: int, record: Optional[VersionRecord], data: str,
                 metrics: dict[str, float], samples: int, report: Optional[ClassificationReport],
                 folder: Optional[Path] = None, at: Optional[str] = None, best: bool = False) -> None:
        self.run = Path(run)
        self.version = version
        self.record: VersionRecord = record or {}
        self.best = best  # the version holds the run's best epoch
        self.data = data
        self.metrics = metrics
        self.samples = samples
        self.report = report
        self.folder: Optional[Path] = folder
        self.at = at or now()
        self.unsaved: Optional[str] = None

    @property
    def confusion(self) -> Optional[np.ndarray]:
        """The confusion matrix (rows: true class, columns: predicted), or None for a model that is no classifier."""
        return None if self.report is None else self.report.confusion

    @property
    def per_class(self) -> Optional[list[dict[str, Any]]]:
        """The per-class rows (class, precision, recall, f1, support), or None."""
        return None if self.report is None else self.report.per_class

    def as_json(self) -> dict[str, Any]:
        """What evaluation.json holds."""
        return {"run": str(self.run), "version": self.version, "version_record": self.record, "data": self.data,
                "samples": self.samples, "metrics": self.metrics, "at": self.at,
                "classification": None if self.report is None else self.report.as_json()}

    def __str__(self) -> str:
        held = version_summary(self.record, self.best)
        width = max(8, *(len(name) for name in self.metrics))
        lines = [f"run:      {self.run}",
                 f"version:  {self.version}" + (f" ({held})" if held else ""),
                 f"data:     {self.data}",
                 f"samples:  {self.samples}", ""]
        lines += [f"{name:<{width}}  {value:.6g}" for name, value in self.metrics.items()]
        if self.report is not None:
            lines += ["", self.report.table()]
        if self.folder is not None:
            lines += ["", f"report:   {self.folder}"]
        return "\n".join(lines)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name} {value:.4g}" for name, value in self.metrics.items())
        return f"<Evaluation of version {self.version} of {self.run} on {self.data}: {shown}>"


def save_evaluation(evaluation: Evaluation, base: Path, title: str) -> Path:
    """Writes `evaluation`'s folder whole in `base` (created): evaluation.json and a classifier's report, under a
    temporary name renamed once complete (what an evaluation killed mid-write left there is removed first).

    Args:
        evaluation: the `Evaluation`.
        base: the folder it goes in (`RUN/evaluations`, or `evaluate --output DIR`'s).
        title: the confusion matrix picture's title (the run, the version, the data).

    Returns:
        the folder, `<base>/<stamp>-v<N>`.
    """
    base.mkdir(parents=True, exist_ok=True)
    remove_dead_evaluations(base)
    name, attempt = f"{folder_stamp()}-v{evaluation.version}", 1
    while (base / name).exists():
        name, attempt = f"{folder_stamp()}-v{evaluation.version}-{attempt}", attempt + 1
    with folder_replaced_atomically(base / in_progress_name(), base / name) as tmp:
        tmp.mkdir()
        (tmp / EVALUATION_FILE).write_text(json.dumps(evaluation.as_json(), indent=1) + "\n")
        if evaluation.report is not None:
            evaluation.report.write(tmp, title=title)
    return base / name
