"""history.csv's rows as a run's files give them, without Keras: what `callbacks.HistoryCSV` writes and reads, what
training_curves.png is drawn from, and what `mlflow sync` rebuilds a damaged outbox's epochs from.

Example:

```python
header, rows, damaged = examine(experiment.history_csv)
[row["epoch"] for row in rows]          # ['1', '2', '3']: the good rows, their epochs rising
```
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from experiments_manager.run.migrations import current_history_rows
from experiments_manager.utils.atomic import PathLike

EPOCH = "epoch"


def examine(path: PathLike) -> tuple[list[str], list[dict[str, str]], Optional[int]]:
    """(header, good rows, how many damaged rows) of the history file at `path`: the good rows have an epoch number
    above the previous row's and a number or nothing in every column, their epochs counted from 1 (an earlier
    engine's file read through `migrations.current_history_rows`); damaged rows None when the file has content but
    no usable header. ([], [], 0) without a file."""
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return [], [], 0
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name for name in (reader.fieldnames or []) if _is_column_name(name)]
    if EPOCH not in header:
        return [], [], (None if text.strip() else 0)
    rows, bad, last = [], 0, -1  # (the first engine counted epochs from 0: `migrations` renumbers them)
    for row in reader:
        if _is_good_row(row, header, last):
            rows.append({name: row[name] or "" for name in header})
            last = int(row[EPOCH])
        else:
            bad += 1
    return header, current_history_rows(rows, EPOCH), bad


def _is_column_name(name: str) -> bool:
    return bool(name) and name.isprintable() and "\ufffd" not in name


def _is_good_row(row: Mapping[Optional[str], Any], header: list[str], last_epoch: int) -> bool:
    """A row with an epoch after `last_epoch`, every column of `header` a number or empty, no extra fields."""
    if None in row or any(row.get(name) is None for name in header):  # too many fields, or too few (cut short)
        return False
    try:
        if int(row[EPOCH]) <= last_epoch:
            return False
        for name, value in row.items():
            if value:
                float(value)  # a loss may be nan or inf: still a row
        return True
    except (TypeError, ValueError):
        return False
