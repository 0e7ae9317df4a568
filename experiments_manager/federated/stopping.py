"""A federation stopped by a signal as `train` stops: SIGINT (Ctrl-C), SIGTERM, SIGUSR1 end it within seconds,
`interrupted`, exit 128 + signal.

`stop_on_signals()` installs the handlers for the block (a second Ctrl-C stops at once, as `train`'s does) and
gives the `StopRequest` the federation's server checks: the ServerApp's grid (`grid.ResponsiveGrid`) raises
`FederationInterrupted` at its next poll (every 0.2 s while it waits for clients or replies), the server records
`interrupted` with the rounds it completed (each one already recorded and, when it improved, exported), and the
simulation ends with it; a deployed run (`federated run`) is stopped on its SuperLink (`flwr stop`).

Example:

```python
with stop_on_signals() as stop:
    run_simulation(server_app=server_app(job_of, stop), ...)
exit_code = stop.exit_code        # 0 when no signal came, else 128 + signal
```
"""

from __future__ import annotations

import contextlib
import signal
from types import FrameType
from typing import Iterator, Optional

from experiments_manager.run.endings import Ending, signalled
from experiments_manager.utils.signals import STOP_SIGNALS, SignalSafeEvent, signal_handlers


class FederationInterrupted(Exception):
    """A stop signal came while the federation ran.

    Args:
        signum: the signal.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class StopRequest:
    """The first stop signal a federation received, if any; shared by the process' threads."""

    def __init__(self) -> None:
        self._event = SignalSafeEvent()  # set by a signal handler
        self.signum: Optional[int] = None

    def request(self, signum: int) -> None:
        """Records `signum` (the first one counts)."""
        if self.signum is None:
            self.signum = signum
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Waits up to `seconds`, less when a stop is requested meanwhile; returns `is_set()`."""
        return self._event.wait(seconds)

    def raise_if_set(self) -> None:
        """Raises `FederationInterrupted` once a stop was requested."""
        if self.signum is not None:
            raise FederationInterrupted(self.signum)

    @property
    def exit_code(self) -> int:
        """0 when no signal came, else 128 + the signal."""
        return 0 if self.signum is None else 128 + self.signum

    def ending(self, rounds_completed: Optional[int]) -> Ending:
        """The `endings.Ending` of a federation this request stopped (interrupted, 128 + the signal)."""
        signum = self.signum if self.signum is not None else signal.SIGTERM
        done = rounds_completed or 0
        return signalled(signum, f"stopped by {signal.Signals(signum).name} after {done} "
                                 f"round{'' if done == 1 else 's'}")


@contextlib.contextmanager
def stop_on_signals(stop: Optional[StopRequest] = None) -> Iterator[StopRequest]:
    """Within the block, SIGINT, SIGTERM and SIGUSR1 request a stop; a second SIGINT raises KeyboardInterrupt.

    Args:
        stop: the `StopRequest` the signals set (default None: a new one); given, the handlers are put back in
            place after something replaced them (`ray.init` puts its own SIGTERM handler in place).

    Example:

    ```python
    with stop_on_signals() as stop:
        wait_for_the_run(stop)
    ```
    """
    stop = StopRequest() if stop is None else stop

    def handle(signum: int, frame: Optional[FrameType]) -> None:
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: at once
        stop.request(signum)

    with signal_handlers(handle, STOP_SIGNALS):
        yield stop
