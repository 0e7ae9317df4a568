"""Training input read from Kafka topics (`consume_data_from_kafka = True`).

See `experiments_manager.training.inputs` for the interface and
`experiments_manager.kafka.stream` for how positions are kept.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, cast

from experiments_manager.utils.errors import UserInputError
from experiments_manager.kafka.closing import close_all_within
from experiments_manager.kafka.connection import KafkaConnection, KafkaStalled, topic_names
from experiments_manager.kafka.reader import check_consumer_config
from experiments_manager.kafka.stream import TrainingStream
from experiments_manager.kafka.validation import ValidationSnapshot
from experiments_manager.keras2.pipelines import samples_to_steps

if TYPE_CHECKING:
    from experiments_manager.kafka.codec import Schema
    from experiments_manager.kafka.progress_callback import ExperimentLike, KafkaRecord
    from experiments_manager.settings.loader import Settings

_LOG = logging.getLogger(__name__)
PREFETCH_BATCHES = 4


def check_kafka_input(settings: Settings, bootstrap_servers: Optional[str] = None) -> str:
    """Before an experiment folder exists: the cluster answers and both topics exist (else UserInputError).

    Returns:
        the bootstrap servers used ('host:port,...').
    """
    connection = KafkaConnection.from_settings(settings, override=bootstrap_servers)
    if not settings.data.train_samples:
        raise UserInputError(
            f"{settings.path.name}: nb_train_samples: expected the number of training samples per epoch "
            "(a Kafka topic is an endless stream)"
        )
    check_consumer_config(connection)  # a property only a consumer checks, before the brokers are asked
    connection.check_topics(topic_names(settings))
    return connection.bootstrap_servers


class KafkaInput:
    """Training batches from `<session_name>_train`, validation from `<session_name>_val`.

    Steps per epoch are `nb_train_samples // batch_size`. The consumer group is
    the experiment's name; the bootstrap servers are those recorded in run.json
    (the `--bootstrap-servers` flag), else the settings'.

    Args:
        experiment: the `Experiment`.
        settings: the loaded `Settings`.
        restored: the checkpoint state resumed from, or None.
        seed: seed of the shuffling.
    """

    def __init__(self, experiment: ExperimentLike, settings: Settings, restored: Optional[Mapping[str, Any]],
                 seed: int) -> None:
        from experiments_manager.kafka.progress_callback import KafkaProgress

        connection = KafkaConnection.from_settings(settings, override=experiment.run_info().get("kafka_bootstrap_servers"))
        train_topic, val_topic = topic_names(settings)
        self.stream = TrainingStream(connection, train_topic, experiment.name, settings.training.batch_size,
                                     settings.kafka.shuffle_buffer_size, seed, settings.kafka.stall_timeout_secs)
        self.validation: Optional[ValidationSnapshot] = None
        try:
            schema = self.stream.start((restored or {}).get("callbacks", {}).get("kafka"))
            self.validation = ValidationSnapshot(connection, val_topic, f"{experiment.name}.validation",
                                                 settings.training.batch_size, settings.kafka.stall_timeout_secs)
            self.validation.refresh()
        except BaseException:
            self.close()
            raise
        assert self.validation.schema is not None  # refresh() read records
        if self.validation.schema.header != schema.header:
            self.close()
            raise UserInputError(
                f"{settings.path.name}: kafka topics {train_topic!r} and {val_topic!r} hold different tensors "
                f"({schema.describe()} vs {self.validation.schema.describe()})"
            )
        experiment.record.kafka({"bootstrap_servers": connection.bootstrap_servers, "consumer_group": experiment.name,
                                 "train_topic": train_topic, "val_topic": val_topic})
        self.train = batches_dataset(self.stream.blocks, schema).rebatch(settings.training.batch_size).prefetch(PREFETCH_BATCHES)
        self.val = batches_dataset(self.validation.batches, schema)
        # check_kafka_input refused a missing nb_train_samples
        self.train_steps: Optional[int] = samples_to_steps(cast(int, settings.data.train_samples),
                                                           settings.training.batch_size)
        self.val_steps: Optional[int] = None
        self.val_restartable: bool = True  # batches of an in-memory snapshot
        self.callbacks: list[Any] = [KafkaProgress(self.stream, self.validation, experiment),
                                     _end_of_training(self.stream)]
        self.resumable_stream: Optional[Any] = self.stream  # its positions, in each checkpoint
        self.after_checkpoint: list[Callable[[], object]] = [lambda: self._commit(experiment.record)]
        self.endless: bool = True

    def stall_of(self, error: BaseException) -> Optional[KafkaStalled]:
        if isinstance(error, KafkaStalled):
            return error
        stall = self.stream.stall  # raised inside tf.data, reaches fit wrapped in a TensorFlow error
        return stall if stall is not None and str(stall) in str(error) else None

    def _commit(self, record: KafkaRecord) -> None:
        """After a checkpoint: its position committed to the consumer group, and run.json's `committed_offsets`
        the offsets the broker acknowledged (a commit that fails is said, and run.json keeps the broker's)."""
        committed = self.stream.commit()
        if committed is not None:
            record.kafka({"committed_offsets": {str(partition): offset for partition, offset in committed.items()}})

    def close(self) -> None:
        """Closes the training and validation consumers and the offset committer together: at most
        `closing.CLOSE_SECONDS` in all for a broker gone or frozen."""
        close_all_within(self.stream.closings() + (self.validation.closings() if self.validation is not None else []))


def _end_of_training(stream: TrainingStream) -> Any:
    """A callback telling the stream when `fit` is over (`TrainingStream.end_training`)."""
    import keras

    def begin(logs: Optional[dict[str, Any]] = None) -> None:
        stream.training_ended = False

    return keras.callbacks.LambdaCallback(on_train_begin=begin, on_train_end=lambda logs=None: stream.end_training())


def batches_dataset(generator: Callable[[], Iterator[Any]], schema: Schema) -> Any:
    """A tf.data dataset over a generator of batches of records with this `Schema`."""
    import tensorflow as tf

    signature = schema.nest([
        tf.TensorSpec((None,) + field.shape, tf.string if field.dtype == "string" else tf.as_dtype(field.dtype))
        for field in schema.fields
    ])
    return tf.data.Dataset.from_generator(generator, output_signature=signature)

