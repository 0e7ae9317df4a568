"""The callbacks of a training run, in the order their work depends on.

`CallbackPlan` is what the trainer fits with. Its recording part, `RunRecords` (history.csv, the best value,
TensorBoard, training_curves.png, exports on improvement, run.json), is also what a federation's server runs
after each round: one list, so a round and an epoch are recorded alike.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence, cast

from experiments_manager.run.resume_state import ResumableParts

if TYPE_CHECKING:
    from experiments_manager.callbacks.best_value import BestValue
    from experiments_manager.callbacks.history_csv import HistoryCSV
    from experiments_manager.callbacks.training_checkpoint import TrainingCheckpoint
    from experiments_manager.export.exporter import Exporter
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.resume_state import CheckpointState
    from experiments_manager.settings.loader import Settings
    from experiments_manager.training.built_model import BuiltModel
    from experiments_manager.training.ema import WeightAverages
    from experiments_manager.training.inputs import InputObject
    from experiments_manager.training.session_options import SessionOptions
    from experiments_manager.tracking.session import TrackingSession

_LOG = logging.getLogger(__name__)


class RunRecords:
    """What records a run's epochs (or a federation's rounds).

    `fence` runs first of all (`WriterFence`: nothing is written once the lease is lost). `head` runs right after
    the epoch's logs are complete: the monitor direction, history.csv, the best value and the TensorBoard / PNG
    reports. `tail(checkpoint)` runs last: export on improvement, the checkpoint,
    then run.json (which must not claim an epoch the checkpoint does not hold).

    Args:
        experiment: the `Experiment`.
        settings: the loaded `Settings`.
        best: the run's `BestValue`.
        exporter: the `Exporter`, or None for a run that does not export.
        monitors: callbacks that follow the monitored value (early stopping, LR-on-plateau): told its direction.
        restored: the checkpoint state a resumed run started from, or None.
        graph: write the model's graph to TensorBoard (default True; a federated client's later rounds: False).

    Example:

    ```python
    records = RunRecords(experiment, settings, BestValue("val_loss"), Exporter(experiment, settings, model))
    callbacks = keras.callbacks.CallbackList([records.fence] + records.head + records.tail(), model=model)
    ```
    """

    def __init__(self, experiment: Experiment, settings: Settings, best: BestValue, exporter: Optional[Exporter] = None,
                 monitors: Iterable[Any] = (), restored: Optional[CheckpointState] = None, graph: bool = True) -> None:
        from experiments_manager import callbacks as ours

        self.experiment = experiment
        self.best = best
        self.exporter = exporter
        self.every_epoch = not settings.export.only_on_improvement
        self.history = ours.HistoryCSV(experiment.history_csv)
        self.fence = ours.WriterFence(experiment.check_writer)
        self.head: list[Any] = [ours.monitor_mode_resolver(best, experiment, settings, list(monitors)),
                     self.history,
                     ours.TrackBestValue(best, settings.path.name),
                     *tensorboard_reports(experiment, settings, best, restored, exporter, graph)]
        self.curves = next(callback for callback in self.head if isinstance(callback, ours.TrainingCurves))

    def tail(self, checkpoint: Optional[TrainingCheckpoint] = None) -> list[Any]:
        """Export on improvement (with an exporter), the checkpoint (if any), run.json."""
        from experiments_manager import callbacks as ours

        exports: list[Any] = [] if self.exporter is None else [
            ours.ExportOnImprovement(self.exporter, self.best, every_epoch=self.every_epoch)]
        return exports + ([] if checkpoint is None else [checkpoint]) + [
            ours.RunInfoUpdater(self.experiment, self.best, self.exporter, checkpoint)]


class CallbackPlan:
    """The callbacks of a run, in the order their work depends on.

    Args:
        experiment: the `Experiment`.
        settings: the loaded `Settings`.
        model: the compiled model.
        inputs: the run's input object (see `experiments_manager.training.inputs`).
        restored: the checkpoint state a resumed run started from, or None.
        averages: the run's `WeightAverages` (EMA), or None.
        reduce_lr_on_plateau: add LR-on-plateau (only when the learning rate is a plain number).
        options: the session's `SessionOptions`.
        stop_agreement: a multi-worker strategy's `summed_over_workers` (every worker stops at the same step), or None.
        seed: the run's seed (each epoch's random state comes from it with `deterministic = True`; default None).
        tracking: the attempt's MLflow `TrackingSession`, or None (default: not tracked).
        checked: a new run's model as its check left it (`built_model.BuiltModel`: its served module and the
            template of its versions), or None (default: the first version is a full save).

    Attributes:
        callbacks: the list given to `fit`.
        history, best, early_stopping, stop_on_signal, exporter, checkpoint, curves: the parts the trainer reads.
        initial_epoch: epochs done before this run started (from the checkpoint).
    """

    def __init__(self, experiment: Experiment, settings: Settings, model: Any, inputs: InputObject,
                 restored: Optional[CheckpointState], averages: Optional[WeightAverages], reduce_lr_on_plateau: bool,
                 options: SessionOptions, stop_agreement: Optional[Callable[[list[int]], Sequence[int]]] = None,
                 seed: Optional[int] = None, tracking: Optional[TrackingSession] = None,
                 checked: Optional[BuiltModel] = None) -> None:
        import keras

        from experiments_manager import callbacks as ours
        from experiments_manager.run.checkpointing import Checkpointer
        from experiments_manager.export.exporter import Exporter

        train_data, val_data = inputs.train, inputs.val
        monitor = options.monitor_of(settings.training.monitor)
        self.validates = options.validate  # `fit` is given the validation data
        patience = settings.training.early_stopping_patience
        self.initial_epoch = restored["epochs_completed"] if restored else 0
        self.best = ours.BestValue(monitor)
        self.early_stopping = ours.ResumableEarlyStopping(monitor=monitor, mode=self.best.mode, patience=patience,
                                                          verbose=1)
        self.stop_on_signal = ours.StopOnSignal(agree=stop_agreement)
        self.exporter = Exporter(experiment, settings, model, in_background=True,
                                 **({"module": checked.module, "template": checked.template} if checked else {})
                                 ) if options.export else None
        plateau: list[Any] = []
        if reduce_lr_on_plateau:  # a schedule owns the learning rate otherwise
            plateau = [ours.ResumableReduceLROnPlateau(
                monitor=monitor, mode=self.best.mode, factor=0.5, patience=max(1, patience // 2), min_lr=1e-7,
                verbose=1,
            )]
        self.resumable = ResumableParts(self.best, self.early_stopping, exports=self.exporter,
                                        reduce_lr=plateau[0] if plateau else None, kafka=inputs.resumable_stream)
        if restored:
            self.resumable.restore_counters(restored.get("callbacks", {}))
        if self.exporter is not None:  # a resume's versions: as its checkpoint left them, or all set aside without one
            self.exporter.at_resume(self.initial_epoch if restored else None)
        stopping = ([self.early_stopping] if options.early_stopping else []) + plateau
        records = RunRecords(experiment, settings, self.best, self.exporter, monitors=[self.early_stopping, *plateau],
                             restored=restored, graph=options.write_graph)
        self.history = records.history
        saved_history = (restored or {}).get("callbacks", {}).get("history")
        if saved_history is not None:  # the file as the checkpoint had it
            self.history.set_state(saved_history)
        self.resumable.history = self.history
        self.curves = records.curves
        self.checkpoint = ours.TrainingCheckpoint(Checkpointer(experiment.checkpoints_dir,
                                                               check_writer=experiment.check_writer),
                                                  self.resumable, inputs.after_checkpoint,
                                                  in_background=True)
        deterministic = [ours.DeterministicEpochs(cast(int, seed))] if settings.runtime.deterministic else []
        self.callbacks = (
            [records.fence]  # first: a run that lost its lease stops before any callback writes
            + deterministic  # every other callback's epoch starts from the (seed, epoch) random state
            + [self.stop_on_signal]
            + _averaging(settings, inputs, averages, options)
            + [keras.callbacks.TerminateOnNaN(), ours.LearningRateLogger()]
            + inputs.callbacks
            + _profiler(settings, experiment, inputs.train_steps or int(train_data.cardinality()))
            + records.head
            + stopping
            + _user_callbacks(settings, model, train_data, val_data, experiment)
            + records.tail(self.checkpoint)
            + tracking_callbacks(tracking, self.checkpoint, self.history, self.initial_epoch)
            + ([ours.ProjectorLogger(str(experiment.logs_dir / "validation"), val_data)] if options.validate else [])
        )

    def close(self, ending: Optional[BaseException] = None) -> None:
        """Waits for the checkpoint and the version being written, if any, and lists the versions in run.json
        (their failures are logged: the run already ended otherwise); draws the epochs training_curves.png lacks
        (when `fit` raised, Keras skipped `on_train_end`).

        Args:
            ending: the error ending the run, if any (default None): when the storage failed (a full disk, a
                read-only or failing file system), the checkpoint's, the export's and the drawing's failures of the
                same kind are not said again beside the run's one line.
        """
        try:
            self.checkpoint.close(ending)  # first: its thread records the epoch in run.json once it is durable
            if self.exporter is not None:
                self.exporter.close(ending)
        finally:
            self.curves.finish(ending)

    def epochs_completed(self) -> int:
        """Epochs fully done so far (the epoch in progress is redone on resume)."""
        return self.checkpoint.epochs_completed if self.checkpoint.epochs_completed is not None else self.initial_epoch


def tensorboard_reports(experiment: Experiment, settings: Settings, best: BestValue,
                        restored: Optional[CheckpointState] = None, exporter: Optional[Exporter] = None,
                        graph: bool = True) -> list[Any]:
    """The callbacks showing a run (or a federation's rounds) in TensorBoard and training_curves.png.

    Placed after `HistoryCSV` and `TrackBestValue`: they read the epoch's logs
    (with the learning rate and raw-weights validation added) and the best value.

    Args:
        experiment: the `Experiment`.
        settings: the loaded `Settings`.
        best: the run's `BestValue`.
        restored: the checkpoint state a resumed run started from, or None.
        exporter: the run's `Exporter`, or None: the graph shown is its served module's when it has one made (traced
            already), else the model's call is traced for it.
        graph: write the model's graph (default True; False: a federated client's later rounds, whose first wrote
            it).
    """
    from experiments_manager import callbacks as ours

    writers = ours.SummaryWriters(experiment.logs_dir)  # one event file per run folder
    frequency = settings.monitoring.histogram_freq
    histograms = [ours.WeightHistograms(writers, frequency)] if frequency else []
    graphs = [ours.ModelGraph(writers, served=(lambda: exporter.served_parts()[0]) if exporter is not None else None)
              ] if graph else []
    return [ours.EpochScalars(writers),
            *graphs,
            *histograms,
            ours.TrainingCurves(experiment.history_csv, experiment.curves_png, best, title=experiment.name,
                                check_writer=experiment.check_writer),
            ours.HParamsLogger(writers, settings.experiment.hparams, best, experiment.label(),
                               write_session_start=not restored)]


def tracking_callbacks(tracking: Optional[TrackingSession], checkpoint: Optional[TrainingCheckpoint],
                       history: HistoryCSV, initial_epoch: int) -> list[Any]:
    """Each epoch's (a federation's round's) metrics to MLflow, once its checkpoint is durable (placed after the
    checkpoint and run.json's record; None: at once); the epochs a resume restored, from history.csv's rows as
    `HistoryCSV` reads them. None tracking: no callback."""
    if tracking is None:
        return []
    from experiments_manager.tracking.epoch_logger import MlflowEpochLogger

    return [MlflowEpochLogger(tracking, checkpoint, lambda: history.read()[1], initial_epoch)]


def _averaging(settings: Settings, inputs: InputObject, averages: Optional[WeightAverages],
               options: SessionOptions) -> list[Any]:
    """Validation sees the EMA weights; the raw ones are validated beside them when asked for."""
    from experiments_manager import callbacks as ours
    from experiments_manager.settings.monitor import is_raw

    if averages is None:
        return []
    averaging: list[Any] = [ours.EMASwap()]  # Keras' SwapEMAWeights, each swap one compiled call
    if settings.training.validate_raw_weights and options.validate_raw_weights:
        if inputs.val_restartable:
            frequency = 1 if is_raw(settings.training.monitor) else settings.training.raw_validation_freq
            averaging.append(ours.RawWeightsValidation(inputs.val, inputs.val_steps, frequency))
        else:
            _LOG.info("%s: the validation data is a generator that cannot be read twice per epoch: "
                      "val_*_raw not logged", settings.path.name)
    return averaging


def _profiler(settings: Settings, experiment: Experiment, steps_per_epoch: int) -> list[Any]:
    """A few mid-epoch steps profiled, when the settings ask for it."""
    from experiments_manager.callbacks import StepProfiler

    if not settings.monitoring.profile:
        return []
    start = max(2, steps_per_epoch // 2)
    return [StepProfiler(experiment.logs_dir, start, start + 3)]


def _user_callbacks(settings: Settings, model: Any, train_data: Any, val_data: Any,
                    experiment: Experiment) -> list[Any]:
    import keras

    found: list[Any] = []
    if settings.training.addon_callbacks is not None:
        added = settings.training.addon_callbacks(model, train_data, val_data)
        found = list(added.values()) if isinstance(added, dict) else list(added or [])
    if settings.monitoring.custom_tensorboard_logs is not None:
        import tensorflow as tf

        writer = tf.summary.create_file_writer(str(experiment.logs_dir / "custom"))

        def log_custom(epoch: int, logs: Optional[dict[str, Any]]) -> None:
            with writer.as_default():
                cast(Callable[..., Any], settings.monitoring.custom_tensorboard_logs)(model, epoch, logs)  # not None

        found.append(keras.callbacks.LambdaCallback(on_epoch_end=log_custom))
    return found
