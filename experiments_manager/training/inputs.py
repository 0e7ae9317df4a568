"""Where training data comes from: the settings' `get_input_pipeline`, or Kafka topics.

The trainer asks `make_inputs` for an input object and does not care which
one it gets. Every input object has:

- `train`, `val`: tf.data datasets of (x, y) batches;
- `train_steps`, `val_steps`: steps per epoch (None: iterate the whole dataset);
- `val_restartable`: False when each pass over `val` continues the last one
  (a Python generator), so a second validation would see other batches
  (`train_restartable`, where present: the same for `train`);
- `callbacks`: Keras callbacks the input needs during `fit`;
- `resumable_stream`: what a checkpoint saves of the input (a Kafka stream's positions), or None;
- `after_checkpoint`: functions to call once a checkpoint is written;
- `endless`: True when training data never runs out (Keras' "ran out of data"
  warning can then only be about the finite validation set, and is silenced);
- `stall_of(error)`: the `InputStalled` behind an error raised by `fit`, or None;
- `close()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from experiments_manager.settings.pipeline import settings_pipeline
from experiments_manager.utils.errors import InputStalled, UserInputError

if TYPE_CHECKING:
    from pathlib import Path

    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.resume_state import CheckpointState
    from experiments_manager.settings.loader import Settings
    from experiments_manager.settings.pipeline import DataPartition


class InputObject(Protocol):
    """What the trainer reads its data from (`SettingsInput`, `kafka.kafka_input.KafkaInput`): see the module."""

    train: Any
    val: Any
    train_steps: Optional[int]
    val_steps: Optional[int]
    val_restartable: bool
    callbacks: list[Any]
    resumable_stream: Optional[Any]  # `get_state()`: a dict, saved in checkpoints (`run.resume_state`)
    after_checkpoint: list[Callable[[], object]]
    endless: bool

    def stall_of(self, error: BaseException) -> Optional[InputStalled]: ...

    def close(self) -> None: ...


def make_inputs(experiment: Experiment, settings: Settings, restored: Optional[CheckpointState], seed: int,
                partition: Optional[DataPartition] = None) -> InputObject:
    """The input object for a run.

    Args:
        experiment: the `Experiment` (Kafka: consumer group and servers from its run.json).
        settings: the loaded `Settings`.
        restored: the checkpoint state being resumed from, or None.
        seed: the run's random seed (Kafka: shuffling).
        partition: a federated client's `DataPartition`, or None.
    """
    if settings.kafka.enabled:
        from experiments_manager.kafka.kafka_input import KafkaInput

        if partition is not None:
            raise UserInputError(f"{settings.path.name}: consume_data_from_kafka: not supported in federated "
                                 "training yet (expected False with enable_federated_learning)")
        return KafkaInput(experiment, settings, restored, seed)
    return SettingsInput(settings, partition, seed, run_folder=experiment.root)


class SettingsInput:
    """The datasets of the settings' `get_input_pipeline`, called once for training and once for validation.

    Keras 2 iterators and generators become datasets (`experiments_manager.keras2.pipelines`).

    Args:
        settings: the loaded `Settings`.
        partition: a federated client's `DataPartition` (applied through the
            settings' `get_client_partition` when they define one), or None.
        seed: the run's seed (batch order of a Keras 2 training sequence).
        run_folder: the run's folder, where relative data folders are also looked for (default None: a new run's).
    """

    def __init__(self, settings: Settings, partition: Optional[DataPartition] = None, seed: int = 0,
                 run_folder: "Optional[str | Path]" = None) -> None:
        train = settings_pipeline(settings, True, partition, seed, run_folder)
        val = settings_pipeline(settings, False, partition, seed, run_folder)
        self.train, self.val = train.dataset, val.dataset
        self.train_steps: Optional[int] = steps_per_epoch(self.train, settings, True, train.steps)
        self.val_steps: Optional[int] = steps_per_epoch(self.val, settings, False, val.steps)
        self.train_restartable: bool = train.restartable
        self.val_restartable: bool = val.restartable
        self.callbacks: list[Any] = []
        self.resumable_stream: Optional[Any] = None
        self.after_checkpoint: list[Callable[[], object]] = []
        self.endless = False

    def stall_of(self, error: BaseException) -> Optional[InputStalled]:
        return error if isinstance(error, InputStalled) else None

    def close(self) -> None:
        pass


def steps_per_epoch(dataset: Any, settings: Settings, training: bool, implied: Optional[int] = None,
                    reader: str = "training") -> Optional[int]:
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
