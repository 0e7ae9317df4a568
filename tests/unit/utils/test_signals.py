"""A stop signal always stops: a handler that sets a `SignalSafeEvent` never waits on the main thread's own lock."""

import concurrent.futures
import signal
import subprocess
import sys
import threading

import pytest

from experiments_manager.utils.signals import SignalSafeEvent

# The main loop of `serve`, `predict` and `predict --edge`: wait on the event a SIGINT / SIGTERM handler sets. Waits
# of 0 s keep the main thread inside `wait`, holding the event's lock between bytecodes, nearly all the time: with
# `threading.Event` in its place, 10 of 20 such processes (and 1 of 20 on one untimed wait) hung for good on three
# SIGTERMs sent back to back.
CHILD = """
import sys
from experiments_manager.utils.signals import SignalSafeEvent, signal_handlers

stop = SignalSafeEvent()
timeout = None if sys.argv[1] == "none" else float(sys.argv[1])
with signal_handlers(lambda signum, frame: stop.set()):
    print("ready", flush=True)
    while not stop.wait(timeout):
        pass
print("stopped", flush=True)
"""
STOP_S = 10  # a process that stops does so in milliseconds; a hung one never


def _stopped_by_three_sigterms(wait: str) -> str:
    """Starts a CHILD looping on `wait`, sends it three SIGTERMs once it is ready; what it printed then, or why not."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, wait], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        for _ in range(3):
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(STOP_S)
        except subprocess.TimeoutExpired:
            return f"pid {child.pid} (waits of {wait} s) still running {STOP_S} s after three SIGTERMs"
        return child.stdout.read()
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


@pytest.mark.claim("several stop signals at once (`timeout` passing on the `pkill` it got too) stop the server as "
                   "one does", note="(the wait of `serve`'s main thread, in 20 processes)")
def test_three_sigterms_at_once_stop_a_process_waiting_on_the_event_every_time():
    """16 processes loop on waits of 0 s, 4 on one untimed wait, two at a time (each on a core of its own, as the
    server's main thread is); each gets three SIGTERMs back to back once it says it is ready, and stops."""
    waits = ["0"] * 16 + ["none"] * 4
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(_stopped_by_three_sigterms, waits))
    assert outcomes == ["stopped\n"] * len(waits)


def test_it_is_an_event_for_the_other_threads():
    """`wait` returns True once set (at once when already set), False on its timeout; a thread waiting with no
    timeout wakes on another thread's `set`; `clear` makes it wait again."""
    event = SignalSafeEvent()
    assert isinstance(event, threading.Event) and not event.is_set()
    assert event.wait(0.01) is False
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(event.wait()))
    waiter.start()
    event.set()
    waiter.join(STOP_S)
    assert woke == [True] and event.is_set() and event.wait(0) is True
    event.clear()
    assert not event.is_set() and event.wait(0) is False
