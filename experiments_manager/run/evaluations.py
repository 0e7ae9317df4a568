"""A run's evaluations: each `evaluate` writes its own folder, `RUN/evaluations/<stamp>-v<N>/evaluation.json`, whole
(a temporary folder renamed), and never the run's run.json: an evaluation takes no lease, so a run is evaluated while
it trains, and two evaluations never wait on each other. `list` and `diff` read the newest here; a run an earlier
engine evaluated has them in run.json's `evaluations` too (read when the folder has none).

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

from experiments_manager.utils.atomic import remove_tree_atomically
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
