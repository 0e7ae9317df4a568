"""The training topic as an endless stream of shuffled batches for tf.data, with at-least-once positions.

Training reads `<session_name>_train` as an endless stream under a consumer
group named after the experiment. Records are decoded in chunks, shuffled in a
bounded pool and cut into batches in Python, handed to tf.data in blocks of
batches (tf.data splits and prefetches them, keeping their order). Each block
carries the position that is safe to resume from once it has been trained on:
per partition, the next offset to read and the offsets still waiting in the
pool. After each trained batch the trainer advances the stream's position; a
checkpoint saves it and then commits it to the group (the lowest waiting
offset). A resumed run starts from the checkpoint's position (else the group's
committed offsets, else the beginning), trains on every record not yet trained
on, and skips those the checkpoint had: at-least-once.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional

import numpy as np

from experiments_manager.kafka.connection import KafkaStalled
from experiments_manager.kafka.position import StreamPosition, waiting_by_partition
from experiments_manager.kafka.reader import CHUNK_RECORDS, POLL_SECONDS, SESSION_TIMEOUT_MS, TopicReader
from experiments_manager.kafka.shuffle_pool import ShufflePool
from experiments_manager.utils.command_name import command_name

if TYPE_CHECKING:
    from confluent_kafka import Consumer
    from numpy.typing import NDArray

    from experiments_manager.kafka.closing import BoundedCall, Closing
    from experiments_manager.kafka.codec import Schema
    from experiments_manager.kafka.connection import KafkaConnection

    # decoded records: (field-ordered arrays, their partitions, their offsets)
    _Chunk = tuple[list[NDArray[Any]], NDArray[np.int32], NDArray[np.int64]]

_LOG = logging.getLogger(__name__)
DRAIN_POLL_SECONDS = 0.02
BLOCK_BATCHES = 8
COMMIT_SECONDS = 10.0  # how long an offset commit waits for the broker's answer


class _Emitted:
    """What the stream had read when a block of batches left it (the position once they are trained)."""

    def __init__(self, batches_total: int, next_offsets: Mapping[int, int], read_to: Mapping[int, int],
                 pool: tuple[NDArray[np.int32], NDArray[np.int64]], skip: StreamPosition) -> None:
        self.batches_total = batches_total
        self.next_offsets = dict(next_offsets)
        self.read_to = dict(read_to)
        self.pool = pool
        self.skip = skip

    def position(self) -> StreamPosition:
        waiting = waiting_by_partition(*self.pool)
        for partition, saved in self.skip.waiting.items():  # waiting in the checkpoint resumed, not re-read yet
            unread = saved[saved >= self.read_to.get(partition, 0)]
            if len(unread):
                waiting[partition] = np.union1d(waiting.get(partition, unread[:0]), unread)
        return StreamPosition(self.next_offsets, waiting)


class TrainingStream:
    """The training topic as endless shuffled batches, with resumable positions.

    Batches leave the stream in blocks of up to `BLOCK_BATCHES` (one Python
    call for several batches; tf.data splits them with `rebatch`). When the
    topic has no new record, the shuffle pool is drained instead of waiting, so
    the last records published are trained on too.

    Args:
        connection: a `KafkaConnection`.
        topic: the training topic.
        group: consumer group (the experiment's name).
        batch_size: records per batch.
        shuffle_buffer: records kept back for shuffling (0: read order).
        seed: seed of the shuffling.
        stall_timeout: seconds without a record (and no whole batch left) before `KafkaStalled`.

    Example:

    ```python
    stream = TrainingStream(connection, "my_test_train", experiment.name, 50, 1000, seed=1, stall_timeout=120)
    schema = stream.start(saved_state)
    dataset = batches_dataset(stream.blocks, schema).rebatch(50)
    ```
    """

    def __init__(self, connection: KafkaConnection, topic: str, group: str, batch_size: int, shuffle_buffer: int,
                 seed: int, stall_timeout: float) -> None:
        self.connection = connection
        self.topic = topic
        self.group = group
        self.batch_size = batch_size
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.stall_timeout = stall_timeout
        self.reader: Optional[TopicReader] = None
        self.records_read = 0
        self.stall: Optional[KafkaStalled] = None
        self._next: dict[int, int] = {}
        self._read_to: dict[int, int] = {}
        self._skip = StreamPosition()
        self._trained: Optional[_Emitted] = None
        self._pending: Optional[_Chunk] = None
        self._emitted: collections.deque[_Emitted] = collections.deque()
        self._batches_emitted = 0
        self._batches_trained = 0
        self._generation = 0
        self._lock = threading.Lock()  # emitted / trained positions (tf.data thread and main thread)
        self._reading = threading.Lock()  # the consumer and the read state, for one generator at a time
        self._committer: Optional[Consumer] = None
        self._commit: Optional[BoundedCall] = None  # the last offset commit, which may still wait on the broker
        self.committed: dict[int, int] = {}  # partition -> the offset the broker acknowledged for the group
        self.training_ended = False  # `fit` returned: stop waiting for records nobody will train on

    def start(self, state: Optional[Mapping[str, Any]] = None) -> Schema:
        """Assigns the partitions at their resume positions and waits for the first record.

        Args:
            state: `get_state()` of a checkpoint, or None (then the group's
                committed offsets, else the beginning of the topic).

        Returns:
            the stream's `Schema` (from the first decodable record).
        """
        from confluent_kafka import KafkaException, TopicPartition

        try:
            self.reader = TopicReader(self.connection, self.topic, self.group, self.stall_timeout)
            saved = StreamPosition.from_json(state if state and state.get("topic") == self.topic else None)
            committed = self.reader.consumer.committed(
                [TopicPartition(self.topic, p) for p in self.reader.partitions], timeout=self.connection.connect_timeout
            )
        except KafkaException as error:
            raise KafkaStalled(f"kafka topic {self.topic!r}: {error.args[0].str()}") from None
        next_offsets = {entry.partition: saved.next.get(entry.partition, entry.offset) for entry in committed}
        start = StreamPosition({p: o for p, o in next_offsets.items() if o >= 0}, saved.waiting)
        self._trained = _Emitted(0, start.next, {}, (np.zeros(0, np.int32), np.zeros(0, np.int64)), start)
        self._read_from(start)
        self._pending = self._wait_for_chunk()
        assert self.reader.decoder.schema is not None  # set by the record just decoded
        return self.reader.decoder.schema

    def _read_from(self, position: StreamPosition) -> None:
        """Reads again from `position`, skipping what it says was trained on."""
        from confluent_kafka import OFFSET_BEGINNING

        assert self.reader is not None  # made by start()
        committed = position.committed()
        starts = {p: committed.get(p, OFFSET_BEGINNING) for p in self.reader.partitions}
        self._skip = position
        self._next = dict(position.next)
        self._read_to = {}
        self.reader.assign(starts)
        _LOG.info("kafka: training reads topic %r from %s as consumer group %r", self.topic,
                  ", ".join(f"partition {p} offset {o if o >= 0 else 'first'}" for p, o in starts.items()),
                  self.group)

    def _poll_chunk(self, generation: int, timeout: float = POLL_SECONDS) -> Optional[_Chunk]:
        """Decoded records read now (leaves, partitions, offsets), or None (also for a replaced generator)."""
        with self._reading:
            if generation != self._generation:
                return None
            assert self.reader is not None  # made by start()
            partitions: list[int] | NDArray[np.int32]  # the read ones, then as an array
            offsets: list[int] | NDArray[np.int64]
            values, partitions, offsets, _ = self.reader.poll(CHUNK_RECORDS, timeout)
            if not values:
                return None
            partitions, offsets = np.asarray(partitions, np.int32), np.asarray(offsets, np.int64)
            for partition in np.unique(partitions):
                partition = int(partition)
                self._read_to[partition] = int(offsets[partitions == partition].max()) + 1
                self._next[partition] = max(self._next.get(partition, 0), self._read_to[partition])
            values, partitions, offsets = self._skip.drop_trained(values, partitions, offsets)
            leaves, kept = self.reader.decode(values) if values else (None, [])
            if leaves is None:
                return None
            self.records_read += len(kept)
            return leaves, partitions[kept], offsets[kept]

    def _wait_for_chunk(self) -> _Chunk:
        since = time.monotonic()
        while True:
            chunk = self._poll_chunk(self._generation)
            if chunk is not None:
                return chunk
            self._check_stall(since)

    def _check_stall(self, since: float) -> None:
        """Raises (and keeps, for the trainer to find behind tf.data's error) `KafkaStalled` past the timeout.

        The message says how much was read and what to do: bring the broker back, or publish more records.
        """
        if time.monotonic() - since > self.stall_timeout:
            assert self.reader is not None  # made by start()
            stalled = self.reader.stalled(since)
            if self.reader.unreachable:
                advice = "once the broker answers again, resume"
            else:
                advice = ("the producer stopped or published less than the run needs (nbEpoch x nb_train_samples "
                          f"records): publish more ({command_name()} kafka-produce, which publishes nbEpoch "
                          "passes by default), then resume")
            self.stall = KafkaStalled(f"{stalled}; {self.records_read} records read from it by this run; {advice}")
            raise self.stall

    def blocks(self) -> Iterator[Any]:
        """Generator of blocks of whole batches (the sample's nesting, numpy arrays), endless.

        A second call (Keras makes a new iterator, e.g. under MirroredStrategy)
        replaces the first: reading starts again from what has been trained on.
        """
        with self._reading:
            with self._lock:
                self._generation += 1
                generation = self._generation
                self._emitted.clear()
                self._batches_emitted = self._batches_trained
            chunk, self._pending = self._pending, None
            if generation > 1:
                self._read_from(self.position)
        pool = ShufflePool(self.shuffle_buffer, self.batch_size, self.seed)
        assert self.reader is not None and self.reader.decoder.schema is not None  # start() read a record
        schema = self.reader.decoder.schema
        idle_since: Optional[float] = None
        while not self.reader.closing and not self.training_ended and generation == self._generation:
            if chunk is not None:
                pool.add(*chunk)
                idle_since = None
                while pool.spare_batches(draining=False):
                    yield schema.nest(self._emit(pool, min(BLOCK_BATCHES, pool.spare_batches(draining=False)),
                                                 generation))
            elif pool.spare_batches(draining=True):  # nothing new for a poll: drain the pool, a block at a time
                yield schema.nest(self._emit(pool, min(BLOCK_BATCHES, pool.spare_batches(draining=True)),
                                             generation))
            else:
                idle_since = idle_since or time.monotonic()
                self._check_stall(idle_since)
            draining = chunk is None and pool.size >= self.batch_size
            chunk = self._poll_chunk(generation, DRAIN_POLL_SECONDS if draining else POLL_SECONDS)

    def _emit(self, pool: ShufflePool, batches: int, generation: int) -> list[NDArray[Any]]:
        block = pool.take(batches * self.batch_size)
        with self._lock:
            if generation != self._generation:
                return block  # a replaced generator: its blocks are not trained on
            self._batches_emitted += batches
            self._emitted.append(_Emitted(self._batches_emitted, self._next, self._read_to, pool.snapshot(),
                                          self._skip))
        return block

    def end_training(self) -> None:
        """Training ended: the generator returns at its next poll. tf.data's prefetching thread keeps asking it
        for a batch after the last step; on a topic read to its end it would wait there, holding up the end of
        `fit`, until the stall timeout."""
        self.training_ended = True

    def mark_trained(self, batches: int) -> None:
        """`batches` batches (counted from the start of training) have been trained on: advance the position."""
        with self._lock:
            self._batches_trained = batches
            while self._emitted and self._emitted[0].batches_total <= batches:
                self._trained = self._emitted.popleft()

    @property
    def position(self) -> StreamPosition:
        """The `StreamPosition` of what has been trained on."""
        with self._lock:
            trained = self._trained
        return trained.position() if trained is not None else StreamPosition()

    @property
    def skipped(self) -> int:
        return self.reader.skipped if self.reader else 0

    def get_state(self) -> dict[str, Any]:
        return {"topic": self.topic, **self.position.as_json()}

    def commit(self) -> Optional[dict[int, int]]:
        """Commits the resume position to the consumer group and waits for the broker's answer, at most
        `COMMIT_SECONDS` (the checkpoint holds the position too: a commit that fails is said in one line, and the
        run goes on).

        Uses a consumer of its own: the reading one is busy in the tf.data
        thread, and librdkafka calls on one consumer from two threads wait on
        each other.

        Returns:
            partition -> offset, what the broker acknowledged (also `self.committed`), or None: nothing committed.
        """
        from confluent_kafka import Consumer, TopicPartition

        from experiments_manager.kafka.closing import BoundedCall

        offsets = [TopicPartition(self.topic, p, o) for p, o in self.position.committed().items()]
        if not offsets:
            return None
        assert self.reader is not None  # made by start()
        shown = ", ".join(f"partition {entry.partition} offset {entry.offset}" for entry in offsets)
        not_committed = (f"kafka: offsets of topic {self.topic!r} ({shown}) not committed to "
                         f"{self.connection.bootstrap_servers}")
        if self.reader.unreachable:  # a commit pending on a dead broker would hold close() for a session timeout
            _LOG.warning("%s: unreachable (the checkpoint holds them)", not_committed)
            return None
        if self._commit is not None and self._commit.pending:
            _LOG.warning("%s: its previous commit still waits for an answer (the checkpoint holds them)",
                         not_committed)
            return None
        if self._committer is None:
            self._committer = Consumer(self.connection.config(**{
                "group.id": self.group, "enable.auto.commit": False, "session.timeout.ms": SESSION_TIMEOUT_MS,
            }))
        committer = self._committer
        self._commit = BoundedCall(lambda: committer.commit(offsets=offsets, asynchronous=False), COMMIT_SECONDS)
        if self._commit.pending:
            _LOG.warning("%s: no answer within %g s, the broker is frozen or overloaded (it may still take them once "
                         "it answers; the checkpoint holds them)", not_committed, COMMIT_SECONDS)
            return None
        answered = self._commit.result or []
        error = self._commit.error or next((entry.error for entry in answered if entry.error is not None), None)
        if error is not None:
            _LOG.warning("%s: %s (the checkpoint holds them)", not_committed, error)
            return None
        self.committed.update({entry.partition: entry.offset for entry in answered})
        return dict(self.committed)

    def close(self) -> None:
        from experiments_manager.kafka.closing import close_all_within

        close_all_within(self.closings())

    def closings(self) -> list[Closing]:
        """Stops reading; the closes of its consumer and its offset committer, for `closing.close_all_within`."""
        closings = self.reader.closings() if self.reader is not None else []
        if self._commit is not None and self._commit.pending:  # a commit still inside it: closing the handle from
            _LOG.warning("kafka: the offset committer of topic %r still waits for the broker: left to the exit",
                         self.topic)  # another thread would destroy it under that commit
        elif self._committer is not None:  # an offset commit may still wait on a broker gone since
            closings.append((self._committer.close, f"the offset committer of topic {self.topic!r}"))
        return closings
