"""Keeps a Kafka-fed run's stream position in step with training."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping, Optional, Protocol

import keras

if TYPE_CHECKING:
    from experiments_manager.kafka.stream import TrainingStream
    from experiments_manager.kafka.validation import ValidationSnapshot

_LOG = logging.getLogger(__name__)


class KafkaRecord(Protocol):
    """What the Kafka input writes of run.json (`run.record_writer.RunRecordWriter.kafka`)."""

    def kafka(self, progress: Mapping[str, Any]) -> None: ...


class ExperimentLike(Protocol):
    """What the Kafka input uses of an `Experiment` (`kafka` may not import the `run` package, even for types)."""

    @property
    def name(self) -> str: ...

    def run_info(self) -> Mapping[str, Any]: ...

    @property
    def record(self) -> KafkaRecord: ...


class KafkaProgress(keras.callbacks.Callback):
    """Advances the stream's resume position after each trained batch, re-reads validation at each epoch start.

    Logs, after each epoch, the records read and skipped and the position a
    resumed run would start from, and records them in run.json.

    Args:
        stream: the `TrainingStream`.
        validation: the `ValidationSnapshot`.
        experiment: the `Experiment`.

    Example:

    ```python
    model.fit(dataset, callbacks=[KafkaProgress(stream, validation, experiment)])
    ```
    """

    def __init__(self, stream: TrainingStream, validation: ValidationSnapshot, experiment: ExperimentLike) -> None:
        super().__init__()
        self.stream = stream
        self.validation = validation
        self.experiment = experiment
        self.batches_trained = 0
        self._reported = {"read": 0, "skipped": 0}

    def on_epoch_begin(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self.validation.refresh()

    def on_train_batch_end(self, batch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self.batches_trained += 1
        self.stream.mark_trained(self.batches_trained)

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        state = self.stream.get_state()
        waiting = sum(len(offsets) for offsets in state["waiting"].values())
        _LOG.info("kafka: epoch %d: read %r up to %s (%d records this process, %d skipped, %d waiting in the "
                  "shuffle pool)", epoch + 1, self.stream.topic, _offsets(state["next"]), self.stream.records_read,
                  self.stream.skipped, waiting)
        info = self.experiment.run_info().get("kafka", {})
        read, skipped = self.stream.records_read, self.stream.skipped
        self.experiment.record.kafka({  # totals over the run and its resumptions (set over the block's other fields)
            "records_read": info.get("records_read", 0) + read - self._reported["read"],
            "records_skipped": info.get("records_skipped", 0) + skipped - self._reported["skipped"],
            "validation_records_skipped": self.validation.skipped,
            "next_offsets": state["next"],  # (`committed_offsets`: what the broker acknowledged, after the checkpoint)
            "validation_records": self.validation.count,
        })
        self._reported = {"read": read, "skipped": skipped}


def _offsets(positions: Mapping[str, int]) -> str:
    return ", ".join(f"partition {p} offset {o}" for p, o in sorted(positions.items())) or "the start"
