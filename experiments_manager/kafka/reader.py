"""One confluent-kafka consumer of a topic: reading, decoding, and noticing when the topic stalls.

`TopicReader` wraps the consumer that the training stream (`kafka.stream`)
and the validation snapshot (`kafka.validation`) each read through: it
assigns partitions at given offsets, polls records without waiting longer
than needed, decodes them (skipping and counting records it cannot decode),
tracks whether the brokers are reachable, and builds the `KafkaStalled` error
that says why no record came.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, cast

from experiments_manager.kafka.connection import UNREACHABLE, KafkaStalled
from experiments_manager.kafka.decoder import BatchDecoder
from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message
    from numpy.typing import NDArray

    from experiments_manager.kafka.closing import Closing
    from experiments_manager.kafka.connection import KafkaConnection

_LOG = logging.getLogger(__name__)
CHUNK_RECORDS = 1024
POLL_SECONDS = 0.2
SESSION_TIMEOUT_MS = 6000


def _consumer_properties(group: str, partition_eof: bool) -> dict[str, Any]:
    """What a reader's consumer sets beside the connection's properties and the settings' `kafka_config`.

    Args:
        group: the consumer group id.
        partition_eof: ask librdkafka to report reaching a partition's end.
    """
    return {
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_TIMEOUT_MS,  # also bounds close() with a commit in flight
        "enable.partition.eof": partition_eof,
    }


def check_consumer_config(connection: KafkaConnection) -> None:
    """Makes a consumer as a `TopicReader` makes its own, then closes it: librdkafka checks every property as it
    makes one (a consumer's: `fetch.max.bytes` against `message.max.bytes`, which an admin client does not check),
    so a `kafka_config` no reader could start with is one line before any folder exists.

    Args:
        connection: the settings' `KafkaConnection`.

    Raises:
        UserInputError: librdkafka refused the configuration (its words, after the settings' name).
    """
    from confluent_kafka import Consumer, KafkaException

    try:
        Consumer(connection.config(**_consumer_properties("experiments_manager-config-check", False))).close()
    except KafkaException as error:
        raise UserInputError(f"{connection.source}: kafka_config: {error.args[0].str()}") from None


class TopicReader:
    """One confluent-kafka consumer and the decoding of what it reads.

    Args:
        connection: a `KafkaConnection`.
        topic: the topic read.
        group: the consumer group id (offsets are committed under it).
        stall_timeout: seconds without a decodable record before `KafkaStalled`.
        partition_eof: ask librdkafka to report reaching a partition's end.
    """

    def __init__(self, connection: KafkaConnection, topic: str, group: str, stall_timeout: float,
                 partition_eof: bool = False) -> None:
        from confluent_kafka import Consumer

        self.connection = connection
        self.topic = topic
        self.stall_timeout = float(stall_timeout)
        self.decoder = BatchDecoder()
        self.skipped = 0
        self._unreachable_since: Optional[float] = None
        self._reported: set[str] = set()
        self._busy = threading.Lock()
        self.closing = False
        self.consumer = Consumer(connection.config(**_consumer_properties(group, partition_eof),
                                                   error_cb=self._on_error))
        self.partitions = connection.partitions(self.consumer, topic)

    def _on_error(self, error: KafkaError) -> None:
        if error.name() in UNREACHABLE and self._unreachable_since is None and not self.closing:
            self._unreachable_since = time.monotonic()
            _LOG.warning("kafka: cannot reach %s (%s): waiting up to %g s for it to come back",
                         self.connection.bootstrap_servers, error.str(), self.stall_timeout)

    @property
    def unreachable(self) -> bool:
        return self._unreachable_since is not None

    def _reached(self) -> None:
        self._reported.clear()
        if self._unreachable_since is not None:
            _LOG.warning("kafka: %s reachable again after %.1f s", self.connection.bootstrap_servers,
                         time.monotonic() - self._unreachable_since)
            self._unreachable_since = None

    def assign(self, starts: Mapping[int, int]) -> None:
        """Reads each partition from its offset (dict partition -> offset)."""
        from confluent_kafka import TopicPartition

        with self._busy:
            self.consumer.assign([TopicPartition(self.topic, p, o) for p, o in starts.items()])

    def poll(self, count: int,
             timeout: float = POLL_SECONDS) -> tuple[list[Optional[bytes]], list[int], list[int], list[int]]:
        """(values, partitions, offsets, eof partitions) of up to `count` records read within `timeout` s."""
        from confluent_kafka import KafkaError

        with self._busy:  # close() from the main thread waits for this call to return
            messages = [] if self.closing else self._available(count, timeout)
        ended: list[int] = []
        if any([message.error() is not None for message in messages]):
            for message in messages:
                error = message.error()
                if error is None:
                    continue
                if error.code() == KafkaError._PARTITION_EOF:
                    ended.append(cast(int, message.partition()))  # an end-of-partition event names it
                elif error.name() not in UNREACHABLE and error.name() not in self._reported:
                    self._reported.add(error.name())  # once until records flow again
                    _LOG.warning("kafka: %s: %s", self.topic, error.str())
            messages = [message for message in messages if message.error() is None]
        if messages or ended:
            self._reached()
        # a record (a message without error) has a partition and an offset
        return ([message.value() for message in messages],
                cast("list[int]", [message.partition() for message in messages]),
                cast("list[int]", [message.offset() for message in messages]), ended)

    def _available(self, count: int, timeout: float) -> list[Message[Any, Any]]:
        """Up to `count` messages: those queued now, else the first to arrive within `timeout` and those behind it.

        (`consume(count, timeout)` alone waits for `count` messages or the whole timeout.)
        """
        messages = self.consumer.consume(num_messages=count, timeout=0)
        if not messages:
            first = self.consumer.poll(timeout)
            if first is not None:
                messages = [first] + self.consumer.consume(num_messages=count - 1, timeout=0)
        return messages

    def decode(self, values: Sequence[Optional[bytes]]) -> tuple[Optional[list[NDArray[Any]]], list[int]]:
        leaves, kept = self.decoder.decode(values)
        self.skipped += len(values) - len(kept)
        for kind, first in self.decoder.new_error_kinds():
            _LOG.warning("kafka: %s: skipping records that cannot be decoded: %s (counted in run.json)",
                         self.topic, first)
        return leaves, kept

    def answers(self, timeout: float = 2.0) -> bool:
        """Whether the cluster answers a metadata request now: a stall's cause is the stream, or the broker (whose
        loss librdkafka may not have reported yet when the stall timeout is short and the machine busy)."""
        from confluent_kafka import KafkaException

        try:
            with self._busy:
                self.consumer.list_topics(self.topic, timeout=timeout)
        except KafkaException:
            return False
        return True

    def stalled(self, since: float) -> KafkaStalled:
        if not self.unreachable and not self.answers():
            self._unreachable_since = time.monotonic()  # (`unreachable` then says so to the caller's advice too)
        if self.unreachable:
            why = "cannot reach " + self.connection.bootstrap_servers
        else:
            why = "no new record" + (f" that could be decoded ({self.skipped} skipped)" if self.skipped else "")
        return KafkaStalled(
            f"kafka topic {self.topic!r}: {why} for {time.monotonic() - since:.0f} s "
            f"(kafka_stall_timeout_secs = {self.stall_timeout:g})"
        )

    def close(self) -> None:
        """Stops reading and closes the consumer (at most `closing.CLOSE_SECONDS` waited for a broker gone)."""
        from experiments_manager.kafka.closing import close_all_within

        close_all_within(self.closings())

    def closings(self) -> list[Closing]:
        """Stops reading; the consumer's close (taking the reading lock first) for `closing.close_all_within`."""
        self.closing = True

        def close_when_idle() -> None:
            with self._busy:
                self.consumer.close()

        return [(close_when_idle, f"the consumer of topic {self.topic!r}")]
