"""Where training data comes from: the settings' `get_input_pipeline`, or Kafka topics.

The trainer asks `make_inputs` for an input object and does not care which
one it gets. Every input object has:

- `train`, `val`: tf.data datasets of (x, y) batches;
- `train_steps`, `val_steps`: steps per epoch (None: iterate the whole dataset);
- `callbacks`: Keras callbacks the input needs during `fit`;
- `stateful`: dict name -> object with `get_state()`, saved in checkpoints;
- `after_checkpoint`: functions to call once a checkpoint is written;
- `endless`: True when training data never runs out (Keras' "ran out of data"
  warning can then only be about the finite validation set, and is silenced);
- `stall_of(error)`: the `InputStalled` behind an error raised by `fit`, or None;
- `close()`.
"""

from experiments_manager.errors import InputStalled, UserInputError


def make_inputs(experiment, settings, restored, seed, partition=None):
    """The input object for a run.

    Args:
        experiment: the `Experiment` (Kafka: consumer group and servers from its run.json).
        settings: the loaded `Settings`.
        restored: the checkpoint state being resumed from, or None.
        seed: the run's random seed (Kafka: shuffling).
        partition: a federated client's `DataPartition`, or None.
    """
    if settings.consume_data_from_kafka:
        from experiments_manager.kafka.inputs import KafkaInput

        if partition is not None:
            raise UserInputError(f"{settings.path.name}: consume_data_from_kafka: not supported in federated "
                                 "training yet (expected False with enable_federated_learning)")
        return KafkaInput(experiment, settings, restored, seed)
    return SettingsInput(settings, partition)


class DataPartition:
    """A federated client's share of the data: client `index` of `count` (Flower's partition-id/num-partitions).

    The settings see `index` as `hparams['procID']`; a settings file may also define
    `get_client_partition(dataset, client_id, num_clients, isTraining)` returning
    the client's part of a pipeline.
    """

    def __init__(self, index, count):
        self.index = index
        self.count = count


class SettingsInput:
    """The datasets of the settings' `get_input_pipeline`, called once for training and once for validation.

    Args:
        settings: the loaded `Settings`.
        partition: a federated client's `DataPartition` (applied through the
            settings' `get_client_partition` when they define one), or None.
    """

    def __init__(self, settings, partition=None):
        self.train = settings_pipeline(settings, True, partition)
        self.val = settings_pipeline(settings, False, partition)
        self.train_steps = steps_per_epoch(self.train, settings.nb_train_samples, settings, "nb_train_samples", "training")
        self.val_steps = steps_per_epoch(self.val, settings.nb_val_samples, settings, "nb_val_samples", "validation")
        self.callbacks = []
        self.stateful = {}
        self.after_checkpoint = []
        self.endless = False

    def stall_of(self, error):
        return error if isinstance(error, InputStalled) else None

    def close(self):
        pass


def settings_pipeline(settings, training, partition=None):
    """The settings' training or validation pipeline (a federated client's part of it, given its `partition`)."""
    folder = settings.raw_data_dir_train if training else settings.raw_data_dir_val
    dataset = settings.get_input_pipeline(folder, training, settings.batch_size, settings.nbEpoch)
    if partition is not None and settings.get_client_partition is not None:
        dataset = settings.get_client_partition(dataset, partition.index, partition.count, training)
    return dataset


def steps_per_epoch(dataset, nb_samples, settings, field, kind):
    """None for finite datasets (Keras iterates them whole), else nb_samples // batch_size."""
    import tensorflow as tf

    cardinality = int(dataset.cardinality()) if hasattr(dataset, "cardinality") else -2
    if cardinality == 0:
        raise UserInputError(f"{settings.path.name}: get_input_pipeline: the {kind} dataset is empty")
    if cardinality > 0:
        return None
    if nb_samples:
        return max(1, nb_samples // settings.batch_size)
    length = "infinite" if cardinality == tf.data.INFINITE_CARDINALITY else "unknown"
    raise UserInputError(
        f"{settings.path.name}: {field}: expected the number of {kind} samples "
        f"(the {kind} dataset's length is {length})"
    )
