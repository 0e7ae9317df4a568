"""Closing a librdkafka client without waiting on a broker that is gone or frozen.

`Consumer.close()` may wait on the cluster without bound: a commit or a
group's leave pending on a coordinator that was killed or stopped (SIGSTOP)
holds it until the broker answers again (confluent-kafka-python issue 1667).
A run that ended (finished, or interrupted by the stall the broker's loss
caused) must not sit silent there: `close_within` closes in a daemon thread
and gives up waiting after `seconds`, saying so in one line; the thread is
left to the process' exit.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

_LOG = logging.getLogger(__name__)
CLOSE_SECONDS = 10.0


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

    def closing() -> None:
        try:
            close()
        except Exception as error:  # noqa: BLE001 - a client that cannot close has nothing more to give
            _LOG.warning("kafka: closing %s: %s", what, error)

    thread = threading.Thread(target=closing, name="kafka-close", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        _LOG.warning("kafka: %s did not close within %g s (the broker is gone or frozen): left to the exit",
                     what, seconds)
        return False
    return True
