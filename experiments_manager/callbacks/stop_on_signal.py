"""Stops training cleanly on SIGTERM / SIGUSR1 / SIGINT (what Slurm sends before preemption)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional

import keras

from experiments_manager.utils.signals import STOP_SIGNALS, signal_handlers

if TYPE_CHECKING:
    from types import FrameType

HANDLED_SIGNALS = STOP_SIGNALS


class TrainingInterrupted(Exception):
    """Raised between two steps after a stop signal arrived.

    Args:
        signum: the signal received.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"received {signal.Signals(signum).name}")


class StopOnSignal(keras.callbacks.Callback):
    """Turns a stop signal into `TrainingInterrupted` at the next step boundary.

    The handler only records the signal; the current training step finishes
    (validation, which runs with EMA weights swapped in, is never cut), then the
    exception leaves `fit`, and the trainer checkpoints and marks the run
    `interrupted`. A second SIGINT stops at once (KeyboardInterrupt).

    Workers of a multi-worker run must stop after the same step, or the others
    would wait forever in the next gradient all-reduce; they agree every
    `agree_every` steps and at each epoch start whether any of them got a signal.

    Args:
        agree: for a multi-worker run, a collective function: a list of ints -> each summed over the workers
            (`MultiWorkerStrategy.summed_over_workers`); None for one process.
        agree_every: steps between two agreements.

    Example:

    ```python
    stopper = StopOnSignal()
    with stopper.installed():
        model.fit(..., callbacks=[stopper])
    ```
    """

    def __init__(self, agree: Optional[Callable[[list[int]], Sequence[int]]] = None, agree_every: int = 10) -> None:
        super().__init__()
        self.received: Optional[int] = None
        self.agree = agree
        self.agree_every = agree_every

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopOnSignal]:
        """Installs the handlers for the duration of the block, then restores the old ones.

        Python delivers signals to the main thread only: elsewhere (a Flower
        client thread, say) this installs nothing and the caller's handlers apply.
        """
        with signal_handlers(self._handle, HANDLED_SIGNALS):
            yield self

    def check(self) -> None:
        if self.agree is not None:
            # which signals the workers got; all stop for the same one (the first of HANDLED_SIGNALS any got), so
            # they exit with the same code and the job script sees one reason
            counts = self.agree([int(self.received == signum) for signum in HANDLED_SIGNALS])
            if any(counts):
                raise TrainingInterrupted(HANDLED_SIGNALS[next(i for i, n in enumerate(counts) if n)])
        elif self.received is not None:
            raise TrainingInterrupted(self.received)

    def on_train_batch_end(self, batch: int, logs: Optional[dict[str, Any]] = None) -> None:
        if self.agree is None or (batch + 1) % self.agree_every == 0:
            self.check()

    def on_epoch_begin(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self.check()
