"""Kafka topics as tf.data datasets, with at-least-once positions saved in checkpoints.

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

Validation reads `<session_name>_val` from the beginning up to the end offsets
seen when the epoch starts, into memory; it is read again only when the topic
changed.
"""

import collections
import logging
import threading
import time

import numpy as np

from experiments_manager.kafka.codec import BatchDecoder
from experiments_manager.kafka.connection import UNREACHABLE, KafkaStalled

_LOG = logging.getLogger(__name__)
CHUNK_RECORDS = 1024
POLL_SECONDS = 0.2
DRAIN_POLL_SECONDS = 0.02
SESSION_TIMEOUT_MS = 6000
BLOCK_BATCHES = 8


class _Reader:
    """One confluent-kafka consumer and the decoding of what it reads.

    Args:
        connection: a `KafkaConnection`.
        topic: the topic read.
        group: the consumer group id (offsets are committed under it).
        stall_timeout: seconds without a decodable record before `KafkaStalled`.
        partition_eof: ask librdkafka to report reaching a partition's end.
    """

    def __init__(self, connection, topic, group, stall_timeout, partition_eof=False):
        from confluent_kafka import Consumer

        self.connection = connection
        self.topic = topic
        self.stall_timeout = float(stall_timeout)
        self.decoder = BatchDecoder()
        self.skipped = 0
        self._unreachable_since = None
        self._reported = set()
        self._busy = threading.Lock()
        self.closing = False
        self.consumer = Consumer(connection.config(**{
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_TIMEOUT_MS,  # also bounds close() with a commit in flight
            "enable.partition.eof": partition_eof,
            "error_cb": self._on_error,
        }))
        self.partitions = connection.partitions(self.consumer, topic)

    def _on_error(self, error):
        if error.name() in UNREACHABLE and self._unreachable_since is None and not self.closing:
            self._unreachable_since = time.monotonic()
            _LOG.warning("kafka: cannot reach %s (%s): waiting up to %g s for it to come back",
                         self.connection.bootstrap_servers, error.str(), self.stall_timeout)

    @property
    def unreachable(self):
        return self._unreachable_since is not None

    def _reached(self):
        self._reported.clear()
        if self._unreachable_since is not None:
            _LOG.warning("kafka: %s reachable again after %.1f s", self.connection.bootstrap_servers,
                         time.monotonic() - self._unreachable_since)
            self._unreachable_since = None

    def assign(self, starts):
        """Reads each partition from its offset (dict partition -> offset)."""
        from confluent_kafka import TopicPartition

        with self._busy:
            self.consumer.assign([TopicPartition(self.topic, p, o) for p, o in starts.items()])

    def poll(self, count, timeout=POLL_SECONDS):
        """(values, partitions, offsets, eof partitions) of up to `count` records read within `timeout` s."""
        from confluent_kafka import KafkaError

        with self._busy:  # close() from the main thread waits for this call to return
            messages = [] if self.closing else self._available(count, timeout)
        ended = []
        if any([message.error() is not None for message in messages]):
            for message in messages:
                error = message.error()
                if error is None:
                    continue
                if error.code() == KafkaError._PARTITION_EOF:
                    ended.append(message.partition())
                elif error.name() not in UNREACHABLE and error.name() not in self._reported:
                    self._reported.add(error.name())  # once until records flow again
                    _LOG.warning("kafka: %s: %s", self.topic, error.str())
            messages = [message for message in messages if message.error() is None]
        if messages or ended:
            self._reached()
        return ([message.value() for message in messages], [message.partition() for message in messages],
                [message.offset() for message in messages], ended)

    def _available(self, count, timeout):
        """Up to `count` messages: those queued now, else the first to arrive within `timeout` and those behind it.

        (`consume(count, timeout)` alone waits for `count` messages or the whole timeout.)
        """
        messages = self.consumer.consume(num_messages=count, timeout=0)
        if not messages:
            first = self.consumer.poll(timeout)
            if first is not None:
                messages = [first] + self.consumer.consume(num_messages=count - 1, timeout=0)
        return messages

    def decode(self, values):
        leaves, kept = self.decoder.decode(values)
        self.skipped += len(values) - len(kept)
        for kind, first in self.decoder.new_error_kinds():
            _LOG.warning("kafka: %s: skipping records that cannot be decoded: %s (counted in run.json)",
                         self.topic, first)
        return leaves, kept

    def stalled(self, since):
        if self.unreachable:
            why = "cannot reach " + self.connection.bootstrap_servers
        else:
            why = "no new record" + (f" that could be decoded ({self.skipped} skipped)" if self.skipped else "")
        return KafkaStalled(
            f"kafka topic {self.topic!r}: {why} for {time.monotonic() - since:.0f} s "
            f"(kafka_stall_timeout_secs = {self.stall_timeout:g})"
        )

    def close(self):
        self.closing = True
        with self._busy:
            self.consumer.close()


class ShufflePool:
    """Records waiting to be batched; batches are uniform picks among the pool.

    Keeps `capacity` records back for shuffling, in preallocated arrays
    together with their partition and offset, so the offsets still waiting
    are known for every partition.

    Args:
        capacity: records kept back for shuffling (0: no shuffling, first in first out).
        batch_size: records per batch.
        seed: seed of the random picks.
    """

    def __init__(self, capacity, batch_size, seed):
        self.capacity = int(capacity)
        self.batch_size = batch_size
        self.shuffle = capacity > 1
        self.rng = np.random.default_rng(seed)
        self.size = 0
        self.arrays = None
        self.partitions = np.zeros(0, np.int32)
        self.offsets = np.zeros(0, np.int64)

    def spare_batches(self, draining):
        """Whole batches that can be taken now: beyond the shuffling reserve, or all of them when draining."""
        return max(0, self.size if draining else self.size - self.capacity) // self.batch_size

    def add(self, leaves, partitions, offsets):
        count = len(offsets)
        self._reserve(self.size + count, leaves)
        end = self.size + count
        for array, leaf in zip(self.arrays, leaves):
            array[self.size:end] = leaf
        self.partitions[self.size:end] = partitions
        self.offsets[self.size:end] = offsets
        self.size = end

    def _reserve(self, needed, leaves):
        if self.arrays is not None and len(self.offsets) >= needed:
            return
        room = max(needed, 2 * len(self.offsets), self.capacity + CHUNK_RECORDS)
        old = self.size

        def grown(array, like):
            bigger = np.empty((room,) + like.shape[1:], like.dtype)
            if array is not None:
                bigger[:old] = array[:old]
            return bigger

        self.arrays = [grown(None if self.arrays is None else array, leaf)
                       for array, leaf in zip(self.arrays or [None] * len(leaves), leaves)]
        self.partitions = grown(self.partitions, self.partitions)
        self.offsets = grown(self.offsets, self.offsets)

    def take(self, count):
        """Removes `count` records; returns their field-ordered arrays."""
        size = self.size
        if self.shuffle:
            picked = self.rng.choice(size, count, replace=False)
            batch = [array[picked] for array in self.arrays]
            in_tail = np.zeros(count, bool)
            in_tail[picked[picked >= size - count] - (size - count)] = True
            holes, tail = picked[picked < size - count], np.arange(size - count, size)[~in_tail]
            for array in self.arrays + [self.partitions, self.offsets]:
                array[holes] = array[tail]  # the tail records not picked fill the holes
        else:
            batch = [array[:count].copy() for array in self.arrays]
            for array in self.arrays + [self.partitions, self.offsets]:
                array[:size - count] = array[count:size]
        self.size = size - count
        return batch

    def snapshot(self):
        """(partitions, offsets) of the records still in the pool (copies)."""
        return self.partitions[:self.size].copy(), self.offsets[:self.size].copy()


def waiting_by_partition(partitions, offsets):
    """partition -> sorted offsets."""
    return {int(partition): np.sort(offsets[partitions == partition]) for partition in np.unique(partitions)}


class StreamPosition:
    """Where a resumed run must start reading so that no record is lost or trained on twice.

    Per partition: `next`, the first offset not read yet, and `waiting`, the
    offsets below it that were read but not trained on (still in the shuffle
    pool). Kafka's committed offset can only say "everything below N is done":
    that is `committed()`, the lowest waiting offset; the checkpoint keeps the
    full position, so a resumed run skips what was already trained.

    Args:
        next_offsets: dict partition -> first offset not read.
        waiting: dict partition -> sorted array of read, untrained offsets.
    """

    def __init__(self, next_offsets=None, waiting=None):
        self.next = dict(next_offsets or {})
        self.waiting = {partition: np.asarray(offsets, np.int64) for partition, offsets in (waiting or {}).items()}

    def committed(self):
        """partition -> the offset to commit to the consumer group (everything below is trained on)."""
        return {
            partition: int(self.waiting[partition][0]) if len(self.waiting.get(partition, ())) else offset
            for partition, offset in self.next.items()
        }

    def as_json(self):
        return {
            "positions": {str(p): o for p, o in self.committed().items()},
            "next": {str(p): o for p, o in self.next.items()},
            "waiting": {str(p): [int(o) for o in offsets] for p, offsets in self.waiting.items() if len(offsets)},
        }

    @classmethod
    def from_json(cls, state):
        """From `as_json()`; a state with only "positions" (committed offsets) starts there."""
        state = state or {}
        next_offsets = {int(p): int(o) for p, o in state.get("next", state.get("positions", {})).items()}
        waiting = {int(p): sorted(int(o) for o in offsets) for p, offsets in state.get("waiting", {}).items()}
        return cls(next_offsets, waiting)

    def drop_trained(self, values, partitions, offsets):
        """Filters out records a resumed run already trained on (below `next`, not waiting)."""
        keep = np.ones(len(offsets), bool)
        for partition, waiting in self.waiting.items():
            below = (partitions == partition) & (offsets < self.next[partition])
            if below.any():
                keep &= ~(below & ~np.isin(offsets, waiting))
        if keep.all():
            return values, partitions, offsets
        return [value for value, kept in zip(values, keep) if kept], partitions[keep], offsets[keep]


class _Emitted:
    """What the stream had read when a block of batches left it (the position once they are trained)."""

    def __init__(self, batches_total, next_offsets, read_to, pool, skip):
        self.batches_total = batches_total
        self.next_offsets = dict(next_offsets)
        self.read_to = dict(read_to)
        self.pool = pool
        self.skip = skip

    def position(self):
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

    def __init__(self, connection, topic, group, batch_size, shuffle_buffer, seed, stall_timeout):
        self.connection = connection
        self.topic = topic
        self.group = group
        self.batch_size = batch_size
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.stall_timeout = stall_timeout
        self.reader = None
        self.records_read = 0
        self.stall = None
        self._next = {}
        self._read_to = {}
        self._skip = StreamPosition()
        self._trained = None
        self._pending = None
        self._emitted = collections.deque()
        self._batches_emitted = 0
        self._batches_trained = 0
        self._generation = 0
        self._lock = threading.Lock()  # emitted / trained positions (tf.data thread and main thread)
        self._reading = threading.Lock()  # the consumer and the read state, for one generator at a time
        self._committer = None

    def start(self, state=None):
        """Assigns the partitions at their resume positions and waits for the first record.

        Args:
            state: `get_state()` of a checkpoint, or None (then the group's
                committed offsets, else the beginning of the topic).

        Returns:
            the stream's `Schema` (from the first decodable record).
        """
        from confluent_kafka import KafkaException, TopicPartition

        try:
            self.reader = _Reader(self.connection, self.topic, self.group, self.stall_timeout)
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
        return self.reader.decoder.schema

    def _read_from(self, position):
        """Reads again from `position`, skipping what it says was trained on."""
        from confluent_kafka import OFFSET_BEGINNING

        committed = position.committed()
        starts = {p: committed.get(p, OFFSET_BEGINNING) for p in self.reader.partitions}
        self._skip = position
        self._next = dict(position.next)
        self._read_to = {}
        self.reader.assign(starts)
        _LOG.info("kafka: training reads topic %r from %s as consumer group %r", self.topic,
                  ", ".join(f"partition {p} offset {o if o >= 0 else 'first'}" for p, o in starts.items()),
                  self.group)

    def _poll_chunk(self, generation, timeout=POLL_SECONDS):
        """Decoded records read now (leaves, partitions, offsets), or None (also for a replaced generator)."""
        with self._reading:
            if generation != self._generation:
                return None
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

    def _wait_for_chunk(self):
        since = time.monotonic()
        while True:
            chunk = self._poll_chunk(self._generation)
            if chunk is not None:
                return chunk
            self._check_stall(since)

    def _check_stall(self, since):
        """Raises (and keeps, for the trainer to find behind tf.data's error) `KafkaStalled` past the timeout.

        The message says how much was read and what to do: bring the broker back, or publish more records.
        """
        if time.monotonic() - since > self.stall_timeout:
            stalled = self.reader.stalled(since)
            if self.reader.unreachable:
                advice = "once the broker answers again, resume"
            else:
                advice = ("the producer stopped or published less than the run needs (nbEpoch x nb_train_samples "
                          "records): publish more (experiments-manager kafka-produce, which publishes nbEpoch "
                          "passes by default), then resume")
            self.stall = KafkaStalled(f"{stalled}; {self.records_read} records read from it by this run; {advice}")
            raise self.stall

    def blocks(self):
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
        schema = self.reader.decoder.schema
        idle_since = None
        while not self.reader.closing and generation == self._generation:
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

    def _emit(self, pool, batches, generation):
        block = pool.take(batches * self.batch_size)
        with self._lock:
            if generation != self._generation:
                return block  # a replaced generator: its blocks are not trained on
            self._batches_emitted += batches
            self._emitted.append(_Emitted(self._batches_emitted, self._next, self._read_to, pool.snapshot(),
                                          self._skip))
        return block

    def mark_trained(self, batches):
        """`batches` batches (counted from the start of training) have been trained on: advance the position."""
        with self._lock:
            self._batches_trained = batches
            while self._emitted and self._emitted[0].batches_total <= batches:
                self._trained = self._emitted.popleft()

    @property
    def position(self):
        """The `StreamPosition` of what has been trained on."""
        with self._lock:
            trained = self._trained
        return trained.position() if trained is not None else StreamPosition()

    @property
    def skipped(self):
        return self.reader.skipped if self.reader else 0

    def get_state(self):
        return {"topic": self.topic, **self.position.as_json()}

    def commit(self):
        """Commits the resume position to the consumer group (asynchronously: the checkpoint holds it too).

        Uses a consumer of its own: the reading one is busy in the tf.data
        thread, and librdkafka calls on one consumer from two threads wait on
        each other.
        """
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        offsets = [TopicPartition(self.topic, p, o) for p, o in self.position.committed().items()]
        if not offsets:
            return
        if self.reader.unreachable:  # a commit pending on a dead broker would hold close() for a session timeout
            _LOG.warning("kafka: %s unreachable: offsets not committed (the checkpoint holds them)",
                         self.connection.bootstrap_servers)
            return
        if self._committer is None:
            self._committer = Consumer(self.connection.config(**{
                "group.id": self.group, "enable.auto.commit": False, "session.timeout.ms": SESSION_TIMEOUT_MS,
            }))
        try:
            self._committer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as error:
            _LOG.warning("kafka: could not commit offsets of %r: %s (the checkpoint holds them)", self.topic, error)

    def close(self):
        for client in (self.reader, self._committer):
            if client is not None:
                client.close()


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

    def __init__(self, connection, topic, group, batch_size, stall_timeout):
        self.topic = topic
        self.batch_size = batch_size
        self.reader = _Reader(connection, topic, group, stall_timeout, partition_eof=True)
        self.leaves = None
        self.count = 0
        self.skipped = 0
        self._extent = None

    @property
    def schema(self):
        return self.reader.decoder.schema

    def refresh(self):
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

    def _read_snapshot(self):
        """The topic's records, waiting (up to the stall timeout) while it is empty."""
        since = time.monotonic()
        while True:
            leaves = self._read_to_end()
            if leaves is not None:
                return leaves
            if time.monotonic() - since > self.reader.stall_timeout:
                raise self.reader.stalled(since)
            time.sleep(POLL_SECONDS)

    def _watermarks(self):
        from confluent_kafka import TopicPartition

        return tuple(
            self.reader.consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                       timeout=self.reader.connection.connect_timeout)
            for p in self.reader.partitions
        )

    def _read_to_end(self):
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        consumer = self.reader.consumer
        self.reader.assign({p: OFFSET_BEGINNING for p in self.reader.partitions})
        remaining = set(self.reader.partitions)
        ends = {}
        chunks = []
        since = time.monotonic()
        skipped_before = self.reader.skipped
        try:
            while remaining:
                values, partitions, offsets, ended = self.reader.poll(CHUNK_RECORDS)
                remaining.difference_update(ended)
                wanted = []
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

    def batches(self):
        """Generator of the snapshot's batches (the last one may be smaller)."""
        leaves, count, schema = self.leaves, self.count, self.schema
        for start in range(0, count, self.batch_size):
            yield schema.nest([leaf[start:start + self.batch_size] for leaf in leaves])

    def close(self):
        self.reader.close()
