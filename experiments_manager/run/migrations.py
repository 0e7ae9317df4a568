"""Files earlier engines wrote, read as this engine writes them: one migration step per format and version.

Code reads a run's files in their current format only; an earlier format is brought to it here, on read (nothing
is rewritten until the run's writer next writes the file, which then holds the current format):

- run.json (`record.py`): version 1 (no `record_version`; engines before attempts were recorded have no
  `attempts` either) -> 2: the record so far becomes attempt 1 (`attempts.Attempt.before_attempts_were_recorded`).
- a checkpoint's state.json (`resume_state.py`): version 1 (no `state_version`; the exporter's state without the
  value, best flag and best version of the version it asked for) -> 2.
- history.csv's rows (`history_rows.py`, which every reader goes through: `callbacks.HistoryCSV`, the training
  curves, MLflow's rebuild): the first engine counted epochs from 0 -> from 1, as run.json, TensorBoard and MLflow
  count them.

A stored sample of each earlier version is read by tests/unit/run/test_migrations.py (tests/data/run_json/,
tests/data/checkpoint_state/, the first engine's run in tests/data/earlier_engines/).
Sweeps of earlier engines (trials.pickle, one process) are joined through `sweeps/legacy.py`. This module does not
import TensorFlow.

Example:

```python
info = current_run_record(json.loads(text))        # a version-1 record: with `attempts` and record_version 2
state = current_checkpoint_state(json.loads(text))  # {"state_version": 2, "epochs_completed": 3, ...}
```
"""

from __future__ import annotations

from typing import Any, Callable, cast

from experiments_manager.run.attempts import Attempt
from experiments_manager.run.record import RUN_RECORD_VERSION, STATUSES, RunRecord, Status
from experiments_manager.run.resume_state import CHECKPOINT_STATE_VERSION, CheckpointState

Step = Callable[[dict[str, Any]], dict[str, Any]]


def _run_record_1_to_2(info: dict[str, Any]) -> dict[str, Any]:
    """Version 1 had the same keys; the oldest had no `attempts`: what they say of the run is attempt 1."""
    if "attempts" not in info:
        info["attempts"] = [Attempt.before_attempts_were_recorded(info)]
    info["record_version"] = 2
    return info


def _checkpoint_state_1_to_2(state: dict[str, Any]) -> dict[str, Any]:
    """Version 1's exporter state lacked the asked-for version's value and best flag, and the best version."""
    exports = state.get("callbacks", {}).get("exports")
    if isinstance(exports, dict):
        exports.setdefault("best_version", None)
        if isinstance(exports.get("requested"), dict):
            exports["requested"].setdefault("value", None)
            exports["requested"].setdefault("best", False)
    state["state_version"] = 2
    return state


# per format: version -> the step from it to the next one
RUN_RECORD_STEPS: dict[int, Step] = {1: _run_record_1_to_2}
CHECKPOINT_STATE_STEPS: dict[int, Step] = {1: _checkpoint_state_1_to_2}


def current_history_rows(rows: list[dict[str, str]], epoch: str = "epoch") -> list[dict[str, str]]:
    """history.csv's good rows (`history_rows.examine`'s, epochs rising) with epochs counted from 1: the rows of the
    first engine, which counted them from 0, renumbered."""
    if rows and int(rows[0][epoch]) == 0:
        return [{**row, epoch: str(int(row[epoch]) + 1)} for row in rows]
    return rows


def _migrated(data: dict[str, Any], key: str, steps: dict[int, Step], current: int) -> dict[str, Any]:
    version = data.get(key, 1)
    while isinstance(version, int) and not isinstance(version, bool) and version < current and version in steps:
        data = steps[version](data)
        version = data[key]
    return data


def current_run_record(data: Any) -> RunRecord:
    """run.json's `data` in the current format (a record of a newer engine, or not an object, as it is:
    `record.record_problems` reports it)."""
    if not isinstance(data, dict):
        return cast(RunRecord, data)
    record = _migrated(data, "record_version", RUN_RECORD_STEPS, RUN_RECORD_VERSION)
    attempts = record.get("attempts")
    for entry in [record, *(attempts if isinstance(attempts, list) else [])]:
        if isinstance(entry, dict) and entry.get("status") in STATUSES:  # the typed word (an unknown one stays as it
            entry["status"] = Status(entry["status"])  # is, for `record_problems` to name)
    return cast(RunRecord, record)


def current_checkpoint_state(data: dict[str, Any]) -> CheckpointState:
    """A checkpoint's state.json in the current format (`resume_state.CheckpointState`)."""
    return cast(CheckpointState, _migrated(data, "state_version", CHECKPOINT_STATE_STEPS, CHECKPOINT_STATE_VERSION))
