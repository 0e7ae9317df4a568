"""history.csv: one row per epoch, every logged value under its own column, across resumes."""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import keras

from experiments_manager.run import history_rows
from experiments_manager.run.history_rows import EPOCH
from experiments_manager.run.resume_state import HistoryState
from experiments_manager.utils.atomic import replaced_atomically
from experiments_manager.utils.epochs import shown_epoch

if TYPE_CHECKING:
    from experiments_manager.utils.atomic import PathLike

_LOG = logging.getLogger(__name__)


class HistoryCSV(keras.callbacks.Callback):
    """Appends each epoch's logs to a CSV file whose header covers every column logged so far.

    Keras' `CSVLogger(append=True)` keeps the file's header but writes each row
    in the order of the current logs, so a resumed run that logs a column the
    file lacks (an engine version that adds `val_loss_raw`, a metric renamed)
    puts values under the wrong names. Here the file is rewritten with the
    wider header when that happens (older rows blank there), then rows are
    appended. `truncate` drops the rows of epochs a resumed run will redo.
    The `epoch` column counts from 1, as Keras' console and run.json do.

    Args:
        path: the CSV file.

    Example:

    ```python
    history = HistoryCSV("history.csv")
    history.truncate(epochs_kept=3)   # resuming after epoch 3
    model.fit(..., initial_epoch=3, callbacks=[history])
    ```
    """

    def __init__(self, path: PathLike) -> None:
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        row = {EPOCH: shown_epoch(epoch), **{name: float(value) for name, value in (logs or {}).items()}}
        header, rows = self.read()
        if not header or set(row) - set(header):
            header = (header or [EPOCH]) + sorted(set(row) - set(header) - {EPOCH})
            self._write(header, rows + [row])
            return
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, header, restval="").writerow(row)

    def read(self) -> tuple[list[str], list[dict[str, str]]]:
        """(header, rows as dicts of text), or ([], []) when there is no file yet.

        A damaged file (random bytes, a cut last row, zeros after a power loss) gives its good rows: those with
        an epoch number above the previous row's and a number or nothing in every column; the others are left out
        with one warning line (a checkpoint's copy rebuilds the file at a resume: `set_state`).
        """
        header, rows, bad = self.examine()
        if bad is None:
            _LOG.warning("%s: damaged (no header with an %r column): started again", self.path, EPOCH)
        elif bad:
            _LOG.warning("%s: %d damaged row(s) left out (kept %d)", self.path, bad, len(rows))
        return header, rows

    def examine(self) -> tuple[list[str], list[dict[str, str]], Optional[int]]:
        """(header, good rows, how many damaged rows) as `read` finds them, without a word; damaged rows None
        when the file has content but no usable header (`experiments-manager check` reports it)."""
        return history_rows.examine(self.path)

    def get_state(self) -> HistoryState:
        """The file's header and rows, for the checkpoint: a resume writes the file again from them."""
        header, rows = self.read()
        return {"header": header, "rows": rows}

    def set_state(self, state: HistoryState) -> None:
        """Writes the file again from a checkpoint's copy (`get_state`): what a damaged or lost file had."""
        if state.get("header"):
            self._write(state["header"], state.get("rows") or [])

    def truncate(self, epochs_kept: int) -> None:
        """Keeps the rows of the first `epochs_kept` epochs (a resumed run redoes the others). A file an earlier
        engine wrote is written again in this format (`run/migrations.py`: epochs from 1)."""
        header, rows = self.read()
        if not header:
            Path(self.path).unlink(missing_ok=True)  # none, or damaged past reading (said): the next epoch starts it
            return
        self._write(header, [row for row in rows if int(row[EPOCH]) <= epochs_kept])

    def _write(self, header: list[str], rows: Sequence[Mapping[str, object]]) -> None:
        with replaced_atomically(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, header, restval="")
            writer.writeheader()
            writer.writerows(rows)

