"""A librdkafka client's close that waits on a broker gone is given up on, in one line; others close as asked."""

import logging
import threading
import time

from experiments_manager.kafka.closing import BoundedCall, close_all_within, close_within


def test_a_close_waiting_on_a_gone_broker_is_given_up_after_its_seconds_with_one_line(caplog):
    released = threading.Event()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="experiments_manager.kafka"):
        closed = close_within(released.wait, "the consumer of topic 't'", seconds=0.5)
    waited = time.monotonic() - started
    released.set()
    assert closed is False
    assert 0.5 <= waited < 5
    assert [record.getMessage() for record in caplog.records] == [
        "kafka: the consumer of topic 't' did not close within 0.5 s (the broker is gone or frozen): left to the exit"]


def test_a_close_that_returns_or_raises_counts_as_closed(caplog):
    calls = []
    assert close_within(lambda: calls.append("closed"), "the committer") is True
    assert calls == ["closed"]

    def refuses():
        raise RuntimeError("handle destroyed")

    with caplog.at_level(logging.WARNING, logger="experiments_manager.kafka"):
        assert close_within(refuses, "the committer") is True
    assert [record.getMessage() for record in caplog.records] == ["kafka: closing the committer: handle destroyed"]


def test_clients_close_together_within_one_deadline_each_hung_one_named(caplog):
    released = threading.Event()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="experiments_manager.kafka"):
        closed = close_all_within([(released.wait, "the consumer of topic 't'"), (lambda: None, "the committer"),
                                   (released.wait, "the consumer of topic 'v'")], seconds=0.5)
    waited = time.monotonic() - started
    released.set()
    assert closed == [False, True, False]
    assert 0.5 <= waited < 1.0 + 0.5  # one deadline for all, not 0.5 s each (a second hung close adds nothing)
    assert [record.getMessage() for record in caplog.records] == [
        f"kafka: the consumer of topic '{name}' did not close within 0.5 s (the broker is gone or frozen): left to "
        "the exit" for name in "tv"]


def test_a_bounded_call_gives_its_answer_or_says_it_is_still_pending():
    assert BoundedCall(lambda: [1, 2], 5).result == [1, 2]

    def refuses():
        raise RuntimeError("Commit failed: Local: Waiting for coordinator")

    assert str(BoundedCall(refuses, 5).error) == "Commit failed: Local: Waiting for coordinator"
    released = threading.Event()
    hung = BoundedCall(released.wait, 0.2)
    assert hung.pending and hung.result is None
    released.set()
