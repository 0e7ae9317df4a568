"""The validation topic held in memory: read from its beginning to its end offsets, batched for tf.data.

Validation reads `<session_name>_val` from the beginning up to the end offsets
seen when the epoch starts, into memory; it is read again only when the topic
changed.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Iterator, Optional

import numpy as np

from experiments_manager.kafka.connection import KafkaStalled
from experiments_manager.kafka.reader import CHUNK_RECORDS, POLL_SECONDS, TopicReader

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from experiments_manager.kafka.closing import Closing
    from experiments_manager.kafka.codec import Schema
    from experiments_manager.kafka.connection import KafkaConnection

_LOG = logging.getLogger(__name__)


class ValidationSnapshot:
    """The validation topic, from its beginning to its end offsets when read, held in memory.

    End offsets are taken from the first fetch of each partition (its high
    watermark), not from a separate offsets query, so they are exact on every
    broker.

    Args:
        connection: a `KafkaConnection`.
        topic: the validation topic.
        group: consumer group id (never committed).
        batch_size: records per batch.
        stall_timeout: seconds to wait for a record in an empty topic.
    """

    def __init__(self, connection: KafkaConnection, topic: str, group: str, batch_size: int,
                 stall_timeout: float) -> None:
        self.topic = topic
        self.batch_size = batch_size
        self.reader = TopicReader(connection, topic, group, stall_timeout, partition_eof=True)
        self.leaves: Optional[list[NDArray[Any]]] = None
        self.count = 0
        self.skipped = 0
        self._extent: Optional[tuple[tuple[int, int], ...]] = None

    @property
    def schema(self) -> Optional[Schema]:
        return self.reader.decoder.schema

    def refresh(self) -> int:
        """Reads the topic again if it changed since the last read. Returns the number of records.

        If the topic cannot be read (broker restarting), the previous snapshot is kept.
        """
        from confluent_kafka import KafkaException

        try:
            extent = self._watermarks()
            if extent == self._extent and self.leaves is not None:
                return self.count
            leaves = self._read_snapshot()
        except (KafkaException, KafkaStalled) as error:
            if self.leaves is None:
                raise KafkaStalled(f"kafka topic {self.topic!r}: cannot read the validation records: {error}") from None
            _LOG.warning("kafka: validation topic %r cannot be read now (%s): validating on the %d records read before",
                         self.topic, error, self.count)
            return self.count
        self.leaves, self.count, self._extent = leaves, len(leaves[0]), extent
        _LOG.info("kafka: validation: %d records from topic %r", self.count, self.topic)
        return self.count

    def _read_snapshot(self) -> list[NDArray[Any]]:
        """The topic's records, waiting (up to the stall timeout) while it is empty."""
        since = time.monotonic()
        while True:
            leaves = self._read_to_end()
            if leaves is not None:
                return leaves
            if time.monotonic() - since > self.reader.stall_timeout:
                raise self.reader.stalled(since)
            time.sleep(POLL_SECONDS)

    def _watermarks(self) -> tuple[tuple[int, int], ...]:
        from confluent_kafka import TopicPartition

        return tuple(
            self.reader.consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                       timeout=self.reader.connection.connect_timeout)
            for p in self.reader.partitions
        )

    def _read_to_end(self) -> Optional[list[NDArray[Any]]]:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        consumer = self.reader.consumer
        self.reader.assign({p: OFFSET_BEGINNING for p in self.reader.partitions})
        remaining = set(self.reader.partitions)
        ends: dict[int, int] = {}
        chunks: list[list[NDArray[Any]]] = []
        since = time.monotonic()
        skipped_before = self.reader.skipped
        try:
            while remaining:
                values, partitions, offsets, ended = self.reader.poll(CHUNK_RECORDS)
                remaining.difference_update(ended)
                wanted: list[int] = []
                for index, (partition, offset) in enumerate(zip(partitions, offsets)):
                    if partition not in ends:
                        _, high = consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)
                        ends[partition] = high
                    if partition in remaining:
                        wanted.append(index)
                        if offset + 1 >= ends[partition]:
                            remaining.discard(partition)
                if wanted:
                    leaves, _ = self.reader.decode([values[index] for index in wanted])
                    if leaves is not None:
                        chunks.append(leaves)
                if values or ended:
                    since = time.monotonic()  # the stall timeout counts idle time, not a long read
                if time.monotonic() - since > self.reader.stall_timeout:
                    raise self.reader.stalled(since)
        finally:
            consumer.unassign()
        self.skipped = self.reader.skipped - skipped_before
        if not chunks:
            return None
        return [np.concatenate(column) for column in zip(*chunks)]

    def batches(self) -> Iterator[Any]:
        """Generator of the snapshot's batches (the last one may be smaller)."""
        leaves, count, schema = self.leaves, self.count, self.schema
        for start in range(0, count, self.batch_size):
            assert leaves is not None and schema is not None  # count > 0: a snapshot was read
            yield schema.nest([leaf[start:start + self.batch_size] for leaf in leaves])

    def close(self) -> None:
        self.reader.close()

    def closings(self) -> list[Closing]:
        """Its consumer's close, for `closing.close_all_within` (closed together with the training stream's)."""
        return self.reader.closings()
