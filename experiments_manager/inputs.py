"""Where training data comes from: the settings' `get_input_pipeline`, or Kafka topics.

The trainer asks `make_inputs` for an input object and does not care which
one it gets. Every input object has:

- `train`, `val`: tf.data datasets of (x, y) batches;
- `train_steps`, `val_steps`: steps per epoch (None: iterate the whole dataset);
- `val_restartable`: False when each pass over `val` continues the last one
  (a Python generator), so a second validation would see other batches
  (`train_restartable`, where present: the same for `train`);
- `callbacks`: Keras callbacks the input needs during `fit`;
- `stateful`: dict name -> object with `get_state()`, saved in checkpoints;
- `after_checkpoint`: functions to call once a checkpoint is written;
- `endless`: True when training data never runs out (Keras' "ran out of data"
  warning can then only be about the finite validation set, and is silenced);
- `stall_of(error)`: the `InputStalled` behind an error raised by `fit`, or None;
- `close()`.
"""

from experiments_manager.utils.errors import InputStalled, UserInputError


def make_inputs(experiment, settings, restored, seed, partition=None):
    """The input object for a run.

    Args:
        experiment: the `Experiment` (Kafka: consumer group and servers from its run.json).
        settings: the loaded `Settings`.
        restored: the checkpoint state being resumed from, or None.
        seed: the run's random seed (Kafka: shuffling).
        partition: a federated client's `DataPartition`, or None.
    """
    if settings.kafka.enabled:
        from experiments_manager.kafka.inputs import KafkaInput

        if partition is not None:
            raise UserInputError(f"{settings.path.name}: consume_data_from_kafka: not supported in federated "
                                 "training yet (expected False with enable_federated_learning)")
        return KafkaInput(experiment, settings, restored, seed)
    return SettingsInput(settings, partition, seed)


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

    Keras 2 iterators and generators become datasets (`experiments_manager.keras2.pipelines`).

    Args:
        settings: the loaded `Settings`.
        partition: a federated client's `DataPartition` (applied through the
            settings' `get_client_partition` when they define one), or None.
        seed: the run's seed (batch order of a Keras 2 training sequence).
    """

    def __init__(self, settings, partition=None, seed=0):
        train = settings_pipeline(settings, True, partition, seed)
        val = settings_pipeline(settings, False, partition, seed)
        self.train, self.val = train.dataset, val.dataset
        self.train_steps = steps_per_epoch(self.train, settings, True, train.steps)
        self.val_steps = steps_per_epoch(self.val, settings, False, val.steps)
        self.train_restartable, self.val_restartable = train.restartable, val.restartable
        self.callbacks = []
        self.stateful = {}
        self.after_checkpoint = []
        self.endless = False

    def stall_of(self, error):
        return error if isinstance(error, InputStalled) else None

    def close(self):
        pass


def settings_pipeline(settings, training, partition=None, seed=0):
    """The settings' training or validation `Pipeline` (a federated client's part of it, given its `partition`)."""
    from experiments_manager.keras2.pipelines import as_pipeline

    folder = settings.data.train_dir if training else settings.data.val_dir
    returned = settings.data.get_input_pipeline(folder, training, settings.training.batch_size, settings.training.epochs)
    if partition is not None and settings.federated.get_client_partition is not None:
        returned = settings.federated.get_client_partition(returned, partition.index, partition.count, training)
    return as_pipeline(returned, settings, training, seed)


def steps_per_epoch(dataset, settings, training, implied=None, reader="training"):
    """None for finite datasets (Keras iterates them whole), else nb_*_samples // batch_size.

    Args:
        dataset: the training (`training` True) or validation dataset.
        settings: the loaded `Settings` (`data.train_samples` / `data.val_samples`, `training.batch_size`).
        implied: the steps a Keras 2 iterator implies (`Pipeline.steps`), used when nb_*_samples is not set.
        reader: who reads it, named in the refusal (default 'training'; the edge export's 'export (edge)').
    """
    import tensorflow as tf

    from experiments_manager.settings.sections import user_name

    kind = "training" if training else "validation"
    field = "train_samples" if training else "val_samples"
    nb_samples = getattr(settings.data, field)

    cardinality = int(dataset.cardinality()) if hasattr(dataset, "cardinality") else -2
    if cardinality == 0:
        raise UserInputError(f"{settings.path.name}: get_input_pipeline: the {kind} dataset is empty")
    if cardinality > 0:
        return None
    if nb_samples:
        from experiments_manager.keras2.pipelines import samples_to_steps

        return samples_to_steps(nb_samples, settings.training.batch_size)
    if implied:
        return implied
    length = "infinite" if cardinality == tf.data.INFINITE_CARDINALITY else "unknown"
    raise UserInputError(
        f"{settings.path.name}: {user_name('data', field)}: expected the number of {kind} samples "
        f"(the {kind} dataset's length is {length}{'' if reader == 'training' else f'; {reader} reads that many'})"
    )
