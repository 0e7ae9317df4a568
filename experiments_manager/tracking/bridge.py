"""The thread that sends a run's outbox to MLflow while it trains: the training thread never waits on the server.

The training thread (and the checkpoint's) only append to the outbox and `wake` the bridge (a queue of one: a wake
never blocks, and wakes coalesce). The bridge sends what is pending; a server that fails is said in one warning line
(and one line when it answers again), tried again after 1, 2, 4 ... up to 30 s, and nothing is lost: what it did not
take stays in the outbox, for the next try, the next attempt, or `experiments-manager mlflow sync RUN`. At the end of
the attempt `close` gives the server a last chance, bounded in time.

Example:

```python
bridge = MlflowBridge(outbox, "http://127.0.0.1:5000", on_run=record_run_id)
bridge.start()
outbox.append({...}); bridge.wake()
bridge.close()
```
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Optional

from experiments_manager.tracking.outbox import Outbox, SentState
from experiments_manager.tracking.sender import (LocalDiskFailed, TrackingRefused, TrackingUnavailable, one_line,
                                                 send_pending)
from experiments_manager.utils.command_name import command_name

_LOG = logging.getLogger(__name__)
RETRY_SECONDS = (1.0, 30.0)  # the first wait after a failure, and the longest
CLOSE_SECONDS = 15.0  # how long the end of an attempt waits for the server


class MlflowBridge:
    """Sends an outbox in a background thread.

    Args:
        outbox: the run's `Outbox`.
        uri: the tracking server.
        on_run: called once with the sent state when the MLflow run is known (run.json records its id; default None).
        sync_command: the command that sends what is left later (said in the warning; default: none named).
    """

    def __init__(self, outbox: Outbox, uri: str, on_run: Optional[Callable[[SentState], None]] = None,
                 sync_command: str = "") -> None:
        self.outbox = outbox
        self.uri = uri
        self._on_run = on_run
        self._run_known = "run_id" in outbox.sent()
        self._sync_command = sync_command
        self._wakes: queue.Queue[None] = queue.Queue(maxsize=1)
        self._closing = threading.Event()
        self._deadline = 0.0  # set by `close`: when a server still down is given up on
        self._thread = threading.Thread(target=self._loop, name="mlflow-bridge", daemon=True)
        self.down_since: Optional[float] = None  # monotonic time of the first failure in a row, or None

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Something was appended: send it soon (never blocks)."""
        try:
            self._wakes.put_nowait(None)
        except queue.Full:
            pass

    def close(self, seconds: float = CLOSE_SECONDS) -> None:
        """Sends what is left, for up to `seconds` (one more try only when the server is down already), and stops
        the thread (what the server did not take stays)."""
        if self.down_since is not None:
            seconds = min(seconds, RETRY_SECONDS[0])
        self._deadline = time.monotonic() + seconds
        self._closing.set()
        self.wake()
        self._thread.join(timeout=seconds + 1)
        left = len(self.outbox.pending())
        if left:
            _LOG.warning("MLflow: %d record(s) not sent to %s, kept in %s: send them with %s", left, self.uri,
                         self.outbox.path, self._sync_command or f"{command_name()} mlflow sync RUN")

    def _loop(self) -> None:
        wait = RETRY_SECONDS[0]
        while True:
            closing = self._closing.is_set()  # before the pass: what was appended before `close` is in it
            if self._send_once():
                wait = RETRY_SECONDS[0]
                if closing:
                    return
                self._wakes.get()  # until something is appended, or the attempt ends
                continue
            left = self._deadline - time.monotonic() if self._closing.is_set() else wait
            if left <= 0:
                return
            try:
                self._wakes.get(timeout=min(wait, left))
            except queue.Empty:
                pass
            wait = min(wait * 2, RETRY_SECONDS[1])

    def _send_once(self) -> bool:
        """One pass over what is pending; False when the server failed."""
        try:
            send_pending(self.outbox, self.uri)
        except Exception as error:  # noqa: BLE001 - nothing of MLflow's (or ours, here) may stop training
            if self.down_since is None:  # said once, until it answers again
                self.down_since = time.monotonic()
                why = str(error) if isinstance(error, TrackingUnavailable) else one_line(error)
                what = ("nothing sent to %s" if isinstance(error, LocalDiskFailed) else "%s refuses the records"
                        if isinstance(error, TrackingRefused) else "%s does not answer")
                _LOG.warning(f"MLflow: {what} (%s): training goes on; what it has not taken stays in %s and is sent "
                             "when it can be", self.uri, why, self.outbox.path)
            return False
        if self.down_since is not None:
            _LOG.warning("MLflow: %s answers again (down %.0f s): what the run kept was sent", self.uri,
                         time.monotonic() - self.down_since)
            self.down_since = None
        state = self.outbox.sent()
        if not self._run_known and "run_id" in state and self._on_run is not None:
            self._run_known = True
            self._on_run(state)
        return True
