"""Calling and closing a librdkafka client without waiting on a broker that is gone or frozen.

`Consumer.close()` may wait on the cluster without bound: a commit or a
group's leave pending on a coordinator that was killed or stopped (SIGSTOP)
holds it until the broker answers again (confluent-kafka-python issue 1667);
so does a synchronous commit. A run that ended (finished, or interrupted by
the stall the broker's loss caused) must not sit silent there:
`close_all_within` closes its clients together, each in a daemon thread, and
gives up waiting after `seconds` in all, saying so in one line per client;
`BoundedCall` waits at most `seconds` for one call (an offset commit). A
thread given up on is left to the process' exit.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional, Sequence

_LOG = logging.getLogger(__name__)
CLOSE_SECONDS = 10.0
Closing = tuple[Callable[[], object], str]  # a client's close, and the client as a warning names it


class BoundedCall:
    """`call()` in a daemon thread, waited for at most `seconds`.

    Args:
        call: what to call (a consumer's synchronous commit).
        seconds: how long to wait for it.

    Attributes:
        result: what `call` returned, once it returned (else None).
        error: what `call` raised, once it raised (else None).

    Example:

    ```python
    commit = BoundedCall(lambda: consumer.commit(offsets=offsets, asynchronous=False), 10)
    if commit.pending: ...   # the broker did not answer within 10 s
    ```
    """

    def __init__(self, call: Callable[[], Any], seconds: float) -> None:
        self.result: Any = None
        self.error: Optional[Exception] = None
        self._thread = threading.Thread(target=self._run, args=(call,), name="kafka-call", daemon=True)
        self._thread.start()
        self._thread.join(seconds)

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except Exception as error:  # noqa: BLE001 - handed to the caller
            self.error = error

    @property
    def pending(self) -> bool:
        """True while the call has not returned (the broker did not answer yet)."""
        return self._thread.is_alive()


def close_all_within(closings: Sequence[Closing], seconds: float = CLOSE_SECONDS) -> list[bool]:
    """Calls every close at once, each in a daemon thread, and waits at most `seconds` for them all.

    Args:
        closings: (a client's close, the client as the warning names it) pairs.
        seconds: how long to wait in all (default `CLOSE_SECONDS`, 10 s).

    Returns:
        for each, whether it closed within `seconds` (an error it raised is logged, and counts as closed).

    Example:

    ```python
    close_all_within([(consumer.close, "the consumer of topic 't'"), (committer.close, "the offset committer")])
    ```
    """

    def closing(close: Callable[[], object], what: str) -> None:
        try:
            close()
        except Exception as error:  # noqa: BLE001 - a client that cannot close has nothing more to give
            _LOG.warning("kafka: closing %s: %s", what, error)

    threads = [threading.Thread(target=closing, args=(close, what), name="kafka-close", daemon=True)
               for close, what in closings]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    closed = []
    for thread, (_, what) in zip(threads, closings):
        thread.join(max(0.0, deadline - time.monotonic()))
        closed.append(not thread.is_alive())
        if thread.is_alive():
            _LOG.warning("kafka: %s did not close within %g s (the broker is gone or frozen): left to the exit",
                         what, seconds)
    return closed


def close_within(close: Callable[[], object], what: str, seconds: float = CLOSE_SECONDS) -> bool:
    """Calls `close()` and waits at most `seconds` for it.

    Args:
        close: the client's close (a `Consumer.close`, or a function taking its locks first).
        what: the client, as the warning names it ("the training topic's consumer").
        seconds: how long to wait (default `CLOSE_SECONDS`, 10 s).

    Returns:
        whether it closed within `seconds` (an error it raised is logged, and counts as closed).

    Example:

    ```python
    close_within(consumer.close, "the training topic's consumer")
    ```
    """
    return close_all_within([(close, what)], seconds)[0]
