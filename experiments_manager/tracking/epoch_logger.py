"""Each epoch's metrics into the run's MLflow outbox, once its checkpoint is durable: every epoch exactly once; then
the versions exported by then (`TrackingSession.append_versions`).

An epoch is appended in the thread that writes its checkpoint, after the checkpoint is on disk (as run.json's record
of it): an epoch a resume trains again was never appended. A kill between the checkpoint and the append loses the
append, not the epoch: at the start of training, the epochs the restored checkpoint holds and the outbox does not
are appended from history.csv (which a resume writes again from that checkpoint). The training thread only copies
the logs.

Example:

```python
callbacks.append(MlflowEpochLogger(session, checkpoint, lambda: history.read()[1], initial_epoch=2))
```
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

import keras

from experiments_manager.tracking.session import finite_numbers
from experiments_manager.utils.epochs import shown_epoch

_LOG = logging.getLogger(__name__)

if TYPE_CHECKING:
    from experiments_manager.tracking.session import TrackingSession


class Durability(Protocol):
    """What the logger asks of a `TrainingCheckpoint`: to run a function once the epoch's checkpoint is durable."""

    def when_durable(self, function: Callable[[], object]) -> None:
        ...


class MlflowEpochLogger(keras.callbacks.Callback):
    """Appends each epoch's logs to the outbox once the epoch's checkpoint is durable.

    Args:
        session: the attempt's `TrackingSession`.
        checkpoint: the `TrainingCheckpoint` (placed before this callback), or None: appended at once.
        history_rows: function () -> history.csv's rows, dicts of text (`callbacks.HistoryCSV.read`'s), read at the
            start of training for the epochs a resume restored.
        initial_epoch: the epochs the restored checkpoint holds (default 0).
    """

    def __init__(self, session: TrackingSession, checkpoint: Optional[Durability],
                 history_rows: Callable[[], list[dict[str, str]]], initial_epoch: int = 0) -> None:
        super().__init__()
        self.session = session
        self.checkpoint = checkpoint
        self.history_rows = history_rows
        self.initial_epoch = initial_epoch

    def on_train_begin(self, logs: Optional[dict[str, Any]] = None) -> None:
        logged = self.session.outbox.last_epoch()
        if logged >= self.initial_epoch:
            return
        for row in self.history_rows():
            row = dict(row)
            epoch = int(row.pop("epoch"))
            if logged < epoch <= self.initial_epoch:
                self.session.append({"kind": "metrics", "step": epoch, "metrics": finite_numbers(row)})

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        entry: Any = {"kind": "metrics", "step": shown_epoch(epoch), "metrics": finite_numbers(logs or {})}

        def append() -> None:  # after run.json's record of the epoch (placed after it): its versions listed
            self.session.append(entry)
            try:
                self.session.append_versions()
            except (ValueError, TypeError, KeyError) as failure:  # bookkeeping never stops training (a lost lease,
                _LOG.warning("MLflow: exported versions not recorded: %s", failure)  # a full disk do)

        if self.checkpoint is None:
            append()
        else:
            self.checkpoint.when_durable(append)

