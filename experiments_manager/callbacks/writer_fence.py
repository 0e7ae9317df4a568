"""The fence of a run's folder: before any callback of a step or an epoch writes, the lease is checked once."""

from typing import Any, Callable, Optional

import keras


class WriterFence(keras.callbacks.Callback):
    """Raises `LeaseLost` (exit 75) at the first step or epoch event after this run lost its experiment's lease:
    another run took the folder over, or this one stalled (a frozen node) past the lease's fence. Placed first,
    it stops the event before any later callback writes (history.csv, TensorBoard, versions, the checkpoint,
    run.json); the console copy in train.log drops its lines by the same test (`run.log.console_copied`).

    The check costs a clock read while the lease is held (`Lease.fenced`): it runs at every batch.

    Args:
        check_writer: raises `LeaseLost` when this process must write nothing more (`Experiment.check_writer`).

    Example:

    ```python
    callbacks = [WriterFence(experiment.check_writer), HistoryCSV(experiment.history_csv), ...]
    ```
    """

    def __init__(self, check_writer: Callable[[], None]) -> None:
        super().__init__()
        self.check_writer = check_writer

    def on_epoch_begin(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self.check_writer()

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self.check_writer()

    def on_train_batch_end(self, batch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self.check_writer()

    def on_test_begin(self, logs: Optional[dict[str, Any]] = None) -> None:
        self.check_writer()

    def on_train_end(self, logs: Optional[dict[str, Any]] = None) -> None:
        self.check_writer()
