"""A Flower Grid that checks for the clients' replies often, not every 3 s."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterable, Optional

if TYPE_CHECKING:
    from flwr.app import Message
    from flwr.serverapp import Grid

    from experiments_manager.federated.stopping import StopRequest

REPLY_POLL_SECONDS = 0.2


class ResponsiveGrid:
    """Wraps the ServerApp's `Grid`: `send_and_receive` asks for replies every `poll_seconds`.

    Flower 1.41's deployment Grid sleeps 3 s between reply checks, which adds up
    to 3 s to every training and evaluation step of a round. Strategies use only
    the Grid's public methods, so this wrapper re-implements `send_and_receive`
    with `push_messages`/`pull_messages` and delegates everything else.

    It also ends a wait at the next poll once a stop was requested (`stopping.StopRequest`: a signal reached the
    federation), by raising `FederationInterrupted`.

    Args:
        grid: the `Grid` Flower passed to the ServerApp.
        poll_seconds: pause between reply checks.
        stop: the federation's `StopRequest` (default None: no stop but Flower's).

    Example:

    ```python
    strategy.start(grid=ResponsiveGrid(grid), initial_arrays=arrays, num_rounds=3)
    ```
    """

    def __init__(self, grid: Grid, poll_seconds: float = REPLY_POLL_SECONDS,
                 stop: Optional[StopRequest] = None) -> None:
        self._grid = grid
        self.poll_seconds = poll_seconds
        self.stop = stop

    def check_stop(self) -> None:
        """Raises `FederationInterrupted` once a stop was requested."""
        if self.stop is not None:
            self.stop.raise_if_set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: Optional[float] = None) -> list[Message]:
        """Pushes `messages`; returns the replies that arrived within `timeout` seconds (None: all of them)."""
        waiting = set(self._grid.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies = []
        self.check_stop()
        while waiting:
            arrived = list(self._grid.pull_messages(waiting))
            replies.extend(arrived)
            waiting.difference_update(reply.metadata.reply_to_message_id for reply in arrived)
            if not waiting or (deadline is not None and time.monotonic() >= deadline):
                break
            self.check_stop()
            time.sleep(self.poll_seconds)
        return replies
