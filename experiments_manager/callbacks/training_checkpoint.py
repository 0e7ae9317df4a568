"""Writes a resumable checkpoint at the end of every epoch, in a background thread if asked."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable, Optional

import keras

from experiments_manager.run.resume_state import CHECKPOINT_STATE_VERSION, CheckpointState, ResumableParts
from experiments_manager.utils.background import BackgroundWorker
from experiments_manager.utils.environment_failures import both_storage_failures

if TYPE_CHECKING:
    from pathlib import Path

    from experiments_manager.run.checkpointing import Checkpointer, CheckpointSnapshot


_LOG = logging.getLogger(__name__)


class TrainingCheckpoint(keras.callbacks.Callback):
    """Saves model, optimizer and callback state after each epoch.

    Place it after every callback whose state it saves, so the saved state includes this epoch. With
    `in_background`, the epoch's end only copies what the checkpoint holds (the weights file made in memory, the
    optimizer's values, the state) and a background thread writes, fsyncs and renames it while the next epoch
    trains; what must wait until it is durable (run.json's record of the epoch) is handed to `when_durable`. The
    next checkpoint, `save`, `wait` and the end of training wait for it, and raise its error if it failed.

    Args:
        checkpointer: an `experiments_manager.run.checkpointing.Checkpointer`.
        parts: the `run.resume_state.ResumableParts` whose state it saves (callbacks, `BestValue`, the exporter,
            history.csv, the Kafka stream's position).
        after_save: functions called on this thread once a checkpoint is on disk (e.g. commit Kafka offsets: only
            what a checkpoint holds may be committed); a checkpoint with any is written on this thread.
        in_background: write the checkpoints of epoch ends in a background thread (default False).

    Example:

    ```python
    checkpoint = TrainingCheckpoint(Checkpointer(experiment.checkpoints_dir), ResumableParts(best, stopper),
                                    in_background=True)
    checkpoint.when_durable(lambda: experiment.record.epoch(progress))  # once epoch 3's is on disk
    ```
    """

    def __init__(self, checkpointer: Checkpointer, parts: ResumableParts,
                 after_save: Iterable[Callable[[], object]] = (), in_background: bool = False) -> None:
        super().__init__()
        self.checkpointer = checkpointer
        self.parts = parts
        self.after_save = list(after_save)
        self.epochs_completed: Optional[int] = None
        self._worker = BackgroundWorker("checkpoint") if in_background and not self.after_save else None
        self._lock = threading.Lock()
        # what runs once the write in flight is durable (never, if it fails: dropped by `wait`); None: no write
        self._pending: Optional[list[Callable[[], object]]] = None

    def _snapshot(self, epochs_completed: int) -> CheckpointSnapshot:
        state: CheckpointState = {"state_version": CHECKPOINT_STATE_VERSION, "epochs_completed": epochs_completed,
                                   "callbacks": self.parts.states()}
        return self.checkpointer.snapshot(self.model, self.model.optimizer, state)

    def save(self, epochs_completed: int) -> Path:
        """Writes the checkpoint of `epochs_completed` on this thread (after the one in flight, if any); returns its
        folder once it is durable."""
        self.wait()
        folder = self.checkpointer.write(self._snapshot(epochs_completed))
        for function in self.after_save:
            function()
        return folder

    def when_durable(self, function: Callable[[], object]) -> None:
        """Calls `function` once the checkpoint being written is durable (in the thread that writes it), at once
        when none is; never when that write fails (its error is raised by the next `wait`)."""
        with self._lock:
            if self._pending is not None:
                self._pending.append(function)
                return
        function()

    def wait(self) -> None:
        """Waits for the checkpoint being written, if any; raises its error if its write failed."""
        if self._worker is not None:
            try:
                self._worker.wait()
            finally:
                with self._lock:
                    self._pending = None  # a failed write's: never run

    def close(self, ending: Optional[BaseException] = None) -> None:
        """Waits for the checkpoint being written; its failure is logged, not raised (the run already ended
        otherwise: failed, or stopped by a signal), unless it and `ending` (the error ending the run, default None)
        are both the storage's: the run's one line says it."""
        try:
            self.wait()
        except Exception as failure:  # noqa: BLE001 - the run's own ending is what it reports
            if not both_storage_failures(failure, ending):
                _LOG.error("The checkpoint after epoch %s failed: %s: %s", self.epochs_completed,
                           type(failure).__name__, failure)

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self.epochs_completed = epoch + 1
        if self._worker is None:
            self.save(self.epochs_completed)
            return
        self.wait()
        snapshot = self._snapshot(self.epochs_completed)
        with self._lock:
            self._pending = []
        self._worker.submit(lambda: self._write(snapshot), f"the checkpoint after epoch {self.epochs_completed}")

    def on_train_end(self, logs: Optional[dict[str, Any]] = None) -> None:
        self.wait()

    def _write(self, snapshot: CheckpointSnapshot) -> None:
        """The background job: the write, then what waited for it (not when the write failed)."""
        self.checkpointer.write(snapshot)
        with self._lock:
            waiting, self._pending = self._pending or [], None
        for function in waiting:
            function()
