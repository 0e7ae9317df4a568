"""`kafka-produce`: publishes the settings' input pipelines to Kafka, one record per sample.

The training pipeline goes to `<session_name>_train` (`epochs` times), the
validation pipeline to `<session_name>_val` (once). Records are
self-describing (see `experiments_manager.kafka.codec`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from experiments_manager.utils.errors import UserInputError
from experiments_manager.settings.pipeline import settings_pipeline
from experiments_manager.kafka.codec import Schema
from experiments_manager.kafka.connection import KafkaConnection, topic_names

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message

    from experiments_manager.settings.loader import Settings

    # called as records go out: (topic, records so far, total or None)
    ProgressFunction = Callable[[str, int, Optional[int]], object]

_LOG = logging.getLogger(__name__)
POLL_EVERY = 1000


class Publication:
    """What was published to one topic."""

    def __init__(self, topic: str, records: int, seconds: float) -> None:
        self.topic = topic
        self.records = records
        self.seconds = seconds

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("inf")


class RecordProducer:
    """Publishes samples of one stream to a topic, creating the topic if needed.

    Args:
        connection: a `KafkaConnection`.
        topic: the topic.
        partitions: partitions of the topic if it has to be created.

    Example:

    ```python
    with RecordProducer(connection, "my_test_train") as producer:
        producer.publish_batch((x_batch, y_batch))
    ```
    """

    def __init__(self, connection: KafkaConnection, topic: str, partitions: int = 1) -> None:
        from confluent_kafka import Producer

        self.connection = connection
        self.topic = topic
        self.schema: Optional[Schema] = None
        self.sent = 0
        self.failed: list[str] = []
        self._ensure_topic(partitions)
        self.producer = Producer(connection.config(**{"linger.ms": 20, "batch.size": 1 << 20}))

    def _ensure_topic(self, partitions: int) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # not re-exported there

        if self.topic in self.connection.cluster_metadata().topics:
            return
        admin = AdminClient(self.connection.config())
        futures = admin.create_topics([NewTopic(self.topic, num_partitions=partitions, replication_factor=-1)],
                                      request_timeout=self.connection.connect_timeout)
        try:
            futures[self.topic].result()
            _LOG.info("kafka: created topic %r (%d partitions)", self.topic, partitions)
        except KafkaException as error:
            if error.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise UserInputError(f"kafka topic {self.topic!r}: could not create it: {error.args[0].str()}") from None

    def _delivered(self, error: Optional[KafkaError], message: Message[Any, Any]) -> None:
        if error is not None and len(self.failed) < 10:
            self.failed.append(error.str())

    def publish_batch(self, batch: Any, limit: Optional[int] = None) -> int:
        """Publishes each sample of a batch (the sample's nesting with a leading batch axis).

        Returns:
            the number of records published (at most `limit`).
        """
        batch = _to_numpy(batch)
        if self.schema is None:
            self.schema = Schema.of(_row(batch, 0))
        leaves = self.schema.flat(batch)
        for leaf, field in zip(leaves, self.schema.fields):
            if tuple(leaf.shape[1:]) != field.shape:
                raise UserInputError(
                    f"get_input_pipeline: {field.name}: samples of shape {tuple(leaf.shape[1:])} after samples of "
                    f"shape {field.shape}; the records of one topic must share shapes (pad or resize in the pipeline)"
                )
        count = len(leaves[0]) if limit is None else min(len(leaves[0]), limit)
        values = self.schema.encode_rows([leaf[:count] for leaf in leaves])
        for value in values:
            self._produce(value)
        return count

    def _produce(self, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(self.topic, value, on_delivery=self._delivered)
                break
            except BufferError:  # local queue full: let librdkafka send
                self.producer.poll(0.05)
        self.sent += 1
        if self.sent % POLL_EVERY == 0:
            self.producer.poll(0)

    def flush(self) -> None:
        """Waits for every record to be acknowledged; UserInputError if some were not."""
        timeout = max(30.0, self.connection.connect_timeout)
        left = self.producer.flush(timeout)
        if left or self.failed:
            reasons = "; ".join(sorted(set(self.failed))) or f"not acknowledged within {timeout:g} s"
            raise UserInputError(
                f"kafka topic {self.topic!r}: {left or len(self.failed)} of {self.sent} records not delivered "
                f"to {self.connection.bootstrap_servers} ({reasons})"
            )

    def __enter__(self) -> RecordProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.flush()
        else:
            self.producer.purge()


def produce(settings: Settings, bootstrap_servers: Optional[str] = None, epochs: int = 1, partitions: int = 1,
            splits: Sequence[str] = ("train", "val"), progress: Optional[ProgressFunction] = None) -> list[Publication]:
    """Publishes the training (`epochs` times) and validation pipelines of the settings.

    Args:
        settings: the loaded `Settings`.
        bootstrap_servers: 'host:port,...' overriding the settings'.
        epochs: passes over the training pipeline.
        partitions: partitions of topics created here.
        splits: which of "train" and "val" to publish.
        progress: a function (topic, records so far, total or None) called as records go out.

    Returns:
        list of `Publication`.
    """
    connection = KafkaConnection.from_settings(settings, override=bootstrap_servers)
    connection.cluster_metadata()  # one clear line now if nobody answers
    train_topic, val_topic = topic_names(settings)
    published: list[Publication] = []
    for split, topic, passes in (("train", train_topic, epochs), ("val", val_topic, 1)):
        if split not in splits:
            continue
        is_training = split == "train"
        limit = settings.data.train_samples if is_training else settings.data.val_samples
        started = time.monotonic()
        with RecordProducer(connection, topic, partitions) as producer:
            for _ in range(passes):
                pipeline = settings_pipeline(settings, is_training)
                if not limit and not pipeline.restartable:
                    field = "nb_train_samples" if is_training else "nb_val_samples"
                    raise UserInputError(f"{settings.path.name}: {field}: expected the number of samples to publish "
                                         f"(the {split} pipeline is a generator)")
                pass_limit = limit or (pipeline.steps * settings.training.batch_size if pipeline.steps else None)
                _publish_pass(producer, pipeline.dataset, pass_limit, settings, split, progress)
        published.append(Publication(topic, producer.sent, time.monotonic() - started))
        _LOG.info("kafka: published %d records to %r at %s", producer.sent, topic, connection.bootstrap_servers)
    return published


def _publish_pass(producer: RecordProducer, dataset: Any, limit: Optional[int], settings: Settings, split: str,
                  progress: Optional[ProgressFunction]) -> None:
    """One pass over a pipeline: all of it if finite, else `limit` samples (nb_*_samples)."""
    import tensorflow as tf

    _check_batched(dataset, settings)
    cardinality = int(dataset.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY and not limit:
        field = "nb_train_samples" if split == "train" else "nb_val_samples"
        raise UserInputError(
            f"{settings.path.name}: {field}: expected the number of samples to publish (the {split} dataset is endless)"
        )
    total = limit if cardinality < 0 else None
    if cardinality > 0:
        total = cardinality * settings.training.batch_size if limit is None else min(limit, cardinality * settings.training.batch_size)
    start = producer.sent
    for batch in dataset:
        left = None if limit is None else limit - (producer.sent - start)
        if left is not None and left <= 0:
            break
        producer.publish_batch(batch, left)
        if progress is not None:
            progress(producer.topic, producer.sent - start, total)


def _check_batched(dataset: Any, settings: Settings) -> None:
    """Records are rows of batches: a scalar element cannot be one, an unbatched-looking one is worth a warning."""
    import tensorflow as tf

    shapes = [spec.shape for spec in tf.nest.flatten(dataset.element_spec)]
    if any(shape.rank == 0 for shape in shapes):
        raise UserInputError(
            f"{settings.path.name}: get_input_pipeline: expected batches (a leading batch axis), got scalar tensors"
        )
    leading = {shape[0] for shape in shapes if shape.rank is not None}
    if None not in leading and settings.training.batch_size not in leading:
        _LOG.warning("%s: get_input_pipeline: the leading axis is %s, not batch_size %d: is the dataset batched? "
                     "Each row of it becomes one record", settings.path.name, sorted(leading), settings.training.batch_size)


def _to_numpy(batch: Any) -> Any:
    if isinstance(batch, dict):
        return {key: _to_numpy(value) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_numpy(value) for value in batch)
    return batch.numpy() if hasattr(batch, "numpy") else batch


def _row(batch: Any, index: int) -> Any:
    if isinstance(batch, dict):
        return {key: _row(value, index) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_row(value, index) for value in batch)
    return batch[index]
