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


def make_inputs(experiment, settings, restored, seed):
    """The input object for a run.

    Args:
        experiment: the `Experiment` (Kafka: consumer group and servers from its run.json).
        settings: the loaded `Settings`.
        restored: the checkpoint state being resumed from, or None.
        seed: the run's random seed (Kafka: shuffling).
    """
    if settings.consume_data_from_kafka:
        from experiments_manager.kafka.inputs import KafkaInput

        return KafkaInput(experiment, settings, restored, seed)
    return SettingsInput(settings)


class SettingsInput:
    """The datasets of the settings' `get_input_pipeline`, called once for training and once for validation."""

    def __init__(self, settings):
        self.train = settings.get_input_pipeline(
            settings.raw_data_dir_train, True, settings.batch_size, settings.nbEpoch
        )
        self.val = settings.get_input_pipeline(settings.raw_data_dir_val, False, settings.batch_size, settings.nbEpoch)
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
