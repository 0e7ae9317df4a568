"""Temporary signal handlers, restored on exit: the one place the project calls `signal.signal`."""

import contextlib
import signal
import threading


@contextlib.contextmanager
def signal_handlers(handler, signums=(signal.SIGINT, signal.SIGTERM)):
    """Within the block, `handler` receives `signums`; the previous handlers come back afterwards.

    Python delivers signals to the main thread only and refuses to install
    handlers elsewhere: off the main thread this installs nothing and the
    caller's handlers apply.

    Args:
        handler: a `signal.signal` handler (a function of signum, frame, or a `signal.SIG*` constant).
        signums: the signals to handle.

    Example:

    ```python
    stop = threading.Event()
    with signal_handlers(lambda signum, frame: stop.set()):
        while not stop.wait(1.0):
            ...
    ```
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, previous_handler in previous.items():
            signal.signal(signum, previous_handler)
