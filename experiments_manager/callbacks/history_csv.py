"""history.csv: one row per epoch, every logged value under its own column, across resumes."""

import csv

import keras

from experiments_manager.utils.atomic import replaced_atomically
from experiments_manager.utils.epochs import shown_epoch

EPOCH = "epoch"


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

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        row = {EPOCH: shown_epoch(epoch), **{name: float(value) for name, value in (logs or {}).items()}}
        header, rows = self.read()
        if not header or set(row) - set(header):
            header = (header or [EPOCH]) + sorted(set(row) - set(header) - {EPOCH})
            self._write(header, rows + [row])
            return
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, header, restval="").writerow(row)

    def read(self):
        """(header, rows as dicts of text), or ([], []) when there is no file yet."""
        try:
            with open(self.path, newline="") as handle:
                reader = csv.DictReader(handle)
                return list(reader.fieldnames or []), list(reader)
        except FileNotFoundError:
            return [], []

    def truncate(self, epochs_kept):
        """Keeps the rows of the first `epochs_kept` epochs (a resumed run redoes the others).

        A file written by an earlier version, whose epochs counted from 0, is renumbered from 1.
        """
        header, rows = self.read()
        if not header:
            return
        rows = [row for row in rows if row.get(EPOCH)]
        if rows and int(rows[0][EPOCH]) == 0:
            rows = [{**row, EPOCH: str(int(row[EPOCH]) + 1)} for row in rows]
        self._write(header, [row for row in rows if int(row[EPOCH]) <= epochs_kept])

    def _write(self, header, rows):
        with replaced_atomically(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, header, restval="")
            writer.writeheader()
            writer.writerows(rows)
