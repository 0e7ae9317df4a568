"""The trainer: seeds, devices, strategy, inputs, the compiled model with EMA, fit, checkpoints, resume.

One `Trainer` runs one experiment. Drivers (sweeps, federated clients, Kafka inputs, multi-worker runs) reuse it
rather than re-implementing training, passing data (a partition, a cluster) and `SessionOptions`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from experiments_manager.utils.environment_failures import stop_on_environment_failure
from experiments_manager.utils.errors import InputStalled, UserInputError
from experiments_manager.run.endings import (Ending, EndingKind, bad_input, ending_of, environment_failure, failed,
                                             finished, signalled)
from experiments_manager.run.lifecycle import record_ending
from experiments_manager.training.inputs import make_inputs
from experiments_manager.training.callback_plan import CallbackPlan
from experiments_manager.training.problem_lines import user_code_error
from experiments_manager.training.compiled_model import compiled_for_training
from experiments_manager.training.model import (computes_in_half_precision, plateau_can_set, precision_policy,
                                                record_learning_rate)
from experiments_manager.training.built_model import BuiltModel
from experiments_manager.training.outcome import TrainingOutcome
from experiments_manager.training.session_options import SessionOptions
from experiments_manager.training.training_session import TrainingSession

if TYPE_CHECKING:
    from experiments_manager.distribute.cluster import WorkerCluster
    from experiments_manager.run.checkpointing import Checkpointer
    from experiments_manager.run.resume_state import CheckpointState
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings.loader import Settings
    from experiments_manager.settings.pipeline import DataPartition
    from experiments_manager.tracking.session import TrackingSession
    from experiments_manager.training.fine_tuning import InitialWeights
    from experiments_manager.training.prepared_run import PreparedRun

_LOG = logging.getLogger(__name__)


class Trainer:
    """Trains the model of one experiment.

    Args:
        experiment: the `Experiment` folder to write to.
        settings: the loaded `Settings`.
        resuming: restore the last checkpoint first.
        partition: a federated client's `DataPartition`, or None.
        cluster: the `WorkerCluster` of a multi-worker run, or None.
        init_from: a fine-tuned run's `InitialWeights`, loaded when no checkpoint is restored (default None).
        tracking: the attempt's MLflow `tracking.session.TrackingSession`, or None (default: not tracked).
        prepared: a new run's devices, seed, inputs and checked model (`prepared_run.prepare_run`), or None
            (default: made here).
        warm: with `resuming`, the model this process trained the run with in its last attempt (a sweep trial's
            previous rung, `BuiltModel`), its traced functions and versions' template kept; the checkpoint is
            restored into it (default None: a new model is built).
    """

    def __init__(self, experiment: Experiment, settings: Settings, resuming: bool = False,
                 partition: Optional[DataPartition] = None, cluster: Optional[WorkerCluster] = None,
                 init_from: Optional[InitialWeights] = None, tracking: Optional[TrackingSession] = None,
                 prepared: Optional[PreparedRun] = None, warm: Optional[BuiltModel] = None) -> None:
        self.experiment = experiment
        self.settings = settings
        self.resuming = resuming
        self.partition = partition
        self.cluster = cluster
        self.init_from = init_from
        self.tracking = tracking
        self._resumed_from: Optional[Checkpointer] = None  # a resume reads its state, then its weights, with it
        self.prepared = prepared
        self.warm = warm

    def run(self) -> TrainingOutcome:
        """Trains; returns a `TrainingOutcome` (its `Ending` recorded in run.json).

        An error ending the run is recorded as `endings.ending_of` maps it (a lost lease: nothing) and goes on to the
        caller: a KeyboardInterrupt (a second Ctrl-C, or one before training started, raised at once wherever
        training is) is the user's interruption (`interrupted`, exit code 130, resumed from its last checkpoint);
        an error of the settings' own code is one line naming its line (UserInputError, the traceback in run.json).
        """
        try:
            return self._run()
        except BaseException as error:
            ending = ending_of(error)
            if ending is None:  # the lease was lost: another run writes the folder now, nothing more is written here
                raise
            if isinstance(error, KeyboardInterrupt):  # said as a signal's interruption is, with the resume command
                self._interrupted(None, ending)
                raise
            if ending.kind is EndingKind.FAILURE:
                line = user_code_error(error, self.settings)  # the settings' own code: one line naming its line
                if line is not None:
                    self._end(dataclasses.replace(bad_input(line), traceback=ending.traceback))
                    raise UserInputError(line) from error
            if ending.kind is EndingKind.ENVIRONMENT and not isinstance(error, UserInputError):
                self._stop_on_environment_failure(error)  # one line naming the path, with the resume command
            self._end(ending)
            raise

    def _end(self, ending: Ending) -> None:
        """Records `ending` (a disk that failed the run may fail this write too: the run's own error stands)."""
        try:
            record_ending(self.experiment, ending)
        except OSError as again:
            _LOG.debug("%s: the ending could not be recorded (%s)", self.experiment.root, again.strerror or again)

    def _stop_on_environment_failure(self, error: BaseException) -> None:
        """A full disk, a quota, a read-only or failing file system: the run is interrupted (resumable once it is
        mended), said in one line (exit code 75); recorded in run.json if the disk still takes that."""
        stop_on_environment_failure(error, self.experiment.root, self.experiment.resume_hint(),
                                    lambda line: record_ending(self.experiment, environment_failure(line)))

    def _run(self) -> TrainingOutcome:
        try:
            session = self.open_session()
        except InputStalled as stall:
            return self._interrupted(None, environment_failure(str(stall)))
        with session:
            history, stopped = self.fit(session, self.settings.training.epochs)
        if stopped is not None:
            return stopped
        return self._finished(session, history)

    def open_session(self, options: SessionOptions = SessionOptions()) -> TrainingSession:
        """Seeds, builds the inputs, the compiled model and its callbacks; restores the last checkpoint when resuming.

        Args:
            options: the `SessionOptions` (default: exports, early stopping, raw-weights validation as the
                settings say).

        Returns:
            a `TrainingSession` (close it when done).

        Raises:
            InputStalled: the input data did not arrive.
        """
        settings = self.settings
        if self.prepared is not None:
            return self._prepared_session(self.prepared, options)
        from experiments_manager.training.run_seed import set_run_seed

        strategy = self._strategy()  # first: a multi-worker strategy must exist before any TensorFlow op
        seed = self._seed(strategy)
        set_run_seed(seed, settings.runtime.deterministic)
        with precision_policy(settings.runtime.mixed_precision):
            # inputs first: the settings' pipelines draw from the seeded generators before the model
            inputs = make_inputs(self.experiment, settings, self._saved_state(), seed, self.partition)
            try:
                warm = self.warm  # the model of the run's last attempt in this process, if it trains alike
                if warm is not None and not warm.continues(strategy, settings.training.get_learning_rate()):
                    warm = None
                with strategy.scope():
                    if warm is not None:
                        model, learning_rate, averages = warm.model, warm.learning_rate, warm.averages
                    else:
                        model, learning_rate, averages = compiled_for_training(settings, inputs.train)
                modules = self._record_model(model, learning_rate, warm.user_modules if warm is not None else None)
                restored = self._restore(model)
                if restored is None and self.init_from is not None:
                    self.init_from.record_transfer(self.experiment, self.init_from.load_into(model, settings, averages))
                plan = CallbackPlan(self.experiment, settings, model, inputs, restored, averages,
                                    reduce_lr_on_plateau=plateau_can_set(model.optimizer, learning_rate),
                                    options=options, seed=seed,
                                    stop_agreement=strategy.summed_over_workers if self.cluster is not None else None,
                                    tracking=self.tracking, checked=warm)
                if settings.runtime.deterministic and plan.initial_epoch and not inputs.endless:
                    from experiments_manager.callbacks.deterministic_epochs import skip_epochs_of_shuffling

                    # the order the epoch had (an endless stream, Kafka's, restores its own positions instead)
                    skip_epochs_of_shuffling(inputs.train, plan.initial_epoch)
            except BaseException:
                inputs.close()
                raise
        plan.history.truncate(plan.initial_epoch)  # a resumed run redoes the epoch in progress
        return TrainingSession(model, inputs, plan, averages, learning_rate, strategy=strategy, user_modules=modules)

    def _prepared_session(self, prepared: PreparedRun, options: SessionOptions) -> TrainingSession:
        """The session of a new run made before its folder existed: what `open_session` records, recorded now."""
        from experiments_manager.run.attempts import device_count

        settings, checked, inputs = self.settings, prepared.checked, prepared.inputs
        model = checked.model
        try:
            kind, count = device_count(prepared.devices)
            self.experiment.record.devices(prepared.devices, count, kind)
            self.experiment.record.seed(prepared.seed, settings.runtime.xla)
            modules = self._record_model(model, checked.learning_rate)
            if self.init_from is not None:  # loaded by the check once the model was built
                transfer = checked.transfer or self.init_from.load_into(model, settings, checked.averages)
                self.init_from.record_transfer(self.experiment, transfer)
            plan = CallbackPlan(self.experiment, settings, model, inputs, None, checked.averages,
                                reduce_lr_on_plateau=plateau_can_set(model.optimizer, checked.learning_rate),
                                options=options, seed=prepared.seed, tracking=self.tracking, checked=checked)
        except BaseException:
            inputs.close()
            raise
        return TrainingSession(model, inputs, plan, checked.averages, checked.learning_rate,
                               strategy=prepared.strategy, user_modules=modules)

    def fit(self, session: TrainingSession, epochs: int,
            extra_callbacks: Iterable[Any] = ()) -> tuple[Any, Optional[TrainingOutcome]]:
        """Runs `fit` up to epoch `epochs` (counted from the run's start).

        Args:
            session: the `TrainingSession` from `open_session`.
            epochs: the epoch to stop at.
            extra_callbacks: callbacks for this call only (a federated round's proximal step).

        Returns:
            (history, None), or (None, outcome) when a signal or stalled data stopped it.
        """
        from experiments_manager.callbacks import TrainingInterrupted

        model, inputs, plan = session.model, session.inputs, session.plan

        with plan.stop_on_signal.installed(), warnings.catch_warnings():
            if inputs.endless:  # then only the finite validation set can "run out", at every epoch
                warnings.filterwarnings("ignore", message="Your input ran out of data")
            try:
                history = model.fit(
                    inputs.train,
                    validation_data=inputs.val if plan.validates else None,
                    epochs=epochs,
                    initial_epoch=plan.epochs_completed(),
                    steps_per_epoch=inputs.train_steps,
                    validation_steps=inputs.val_steps if plan.validates else None,
                    shuffle=False,  # datasets come shuffled (or not) from get_input_pipeline
                    callbacks=plan.callbacks + list(extra_callbacks),
                    verbose=1 if sys.stdout.isatty() else 2,
                )
            except TrainingInterrupted as interruption:
                return None, self._interrupted(plan, signalled(interruption.signum, str(interruption)))
            except Exception as error:
                lost = self.cluster.lost_worker_line(error, plan.epochs_completed() + 1) if self.cluster else None
                if lost is not None:  # the weights may be mid-step: the last checkpoint stands
                    return None, self._interrupted(None, environment_failure(lost))
                stall = inputs.stall_of(error)
                if stall is None:
                    raise
                return None, self._interrupted(plan, environment_failure(str(stall)))
        return history, None

    def _seed(self, strategy: Any) -> int:
        from experiments_manager.training.run_seed import run_seed

        recorded = self.experiment.run_info().get("seed")
        seed = run_seed(recorded if recorded is not None else self.settings.runtime.random_seed)
        if self.cluster is not None:  # one seed for all: the workers' shuffles must shard the same order
            seed = strategy.chief_value(seed)
        self.experiment.record.seed(seed, self.settings.runtime.xla)
        return seed

    def _strategy(self) -> Any:
        from experiments_manager.run.attempts import device_count
        from experiments_manager.distribute.devices import make_strategy, select_devices

        name = self.settings.path.name
        devices = select_devices(self.settings.runtime.gpu_ids, name)
        kind, count = device_count(devices)  # what `device_hours` sums, per attempt
        self.experiment.record.devices(devices, count, kind)
        if self.cluster is None:
            return make_strategy(self.settings.runtime.distribution_strategy, devices, name)
        self.experiment.record.workers(self.cluster.num_workers, self.cluster.source)
        return self.cluster.make_strategy(self.settings.runtime.worker_heartbeat_timeout)

    def _record_model(self, model: Any, learning_rate: Any, built_with: Optional[list[Path]] = None) -> list[Path]:
        """What run.json records of the built model: the rate its optimizer trains at (`record_learning_rate`), its
        precision however set, and this attempt's code identity: the experiment's copies of the settings and model
        files, and the user's own modules they imported (loaded now, or `built_with`: those a continued model was
        built with; a resume compares them with the next attempt's). Returns those modules."""
        from experiments_manager.run.attempts import user_modules
        from experiments_manager.settings.loader import MODEL_MODULE_PREFIX, SETTINGS_MODULE_PREFIX

        record_learning_rate(self.experiment, self.settings, model.optimizer, learning_rate)
        self.experiment.record.precision(computes_in_half_precision(model))
        copies = [self.experiment.settings_copy, self.experiment.model_file_copy()]
        if built_with is None:
            built_with = user_modules(skip_names=(SETTINGS_MODULE_PREFIX, MODEL_MODULE_PREFIX))
        self.experiment.record_code(copies + built_with)
        return built_with

    def _saved_state(self) -> Optional[CheckpointState]:
        """The last checkpoint's state (epochs, callbacks, Kafka position), read before the model exists."""
        from experiments_manager.run.checkpointing import Checkpointer

        if not self.resuming:
            return None
        # a resume holds the experiment's lease: it moves damaged checkpoints aside
        self._resumed_from = Checkpointer(self.experiment.checkpoints_dir)
        return self._resumed_from.resumable_state()

    def _restore(self, model: Any) -> Optional[CheckpointState]:
        from experiments_manager.run.checkpointing import Checkpointer

        if not self.resuming:
            return None
        checkpointer = self._resumed_from or Checkpointer(self.experiment.checkpoints_dir)
        state = checkpointer.restore_latest(model, model.optimizer)  # the checkpoint _saved_state verified
        if state is None:
            _LOG.info("No checkpoint in %s: training from the first epoch", self.experiment.root)
        else:
            _LOG.info("Resuming after epoch %d", state["epochs_completed"])
        return state

    def _interrupted(self, plan: Optional[CallbackPlan], ending: Ending) -> TrainingOutcome:
        """Checkpoints what was trained (if a step boundary was reached) and records `ending` (a signal's, stalled
        data's); then waits for a version being written (a failure logged: the checkpoint asks a resume to export it
        again)."""
        if plan is not None:
            plan.checkpoint.save(plan.epochs_completed())
            done = f"checkpointed after {plan.epochs_completed()} epochs"
        else:  # stopped before fit or in the middle of a step: the last checkpoint stands
            from experiments_manager.run.checkpointing import Checkpointer

            saved = Checkpointer(self.experiment.checkpoints_dir).latest_state()
            done = (f"its last checkpoint is after epoch {saved['epochs_completed']}" if saved
                    else "no checkpoint yet: a resume starts from the first epoch")
        record_ending(self.experiment, ending)
        if plan is not None:  # first the checkpoint and the status (a signal's grace period is short)
            plan.close()
        hint = (self.experiment.resume_hint() if self.cluster is None or self.cluster.is_chief
                else "the chief's command, on every worker (a job's --requeue-file does it)")  # not its scratch copy
        _LOG.warning("%s: %s; resume with: %s", ending.reason, done, hint)
        return TrainingOutcome(self.experiment, ending, settings=self.settings)

    def _finished(self, session: TrainingSession, history: Any) -> TrainingOutcome:
        model, plan = session.model, session.plan
        losses = history.history.get("loss", [])
        if any(not math.isfinite(value) for value in losses):
            ending = failed(f"loss became NaN or infinite at epoch {len(losses) + plan.initial_epoch}")
            record_ending(self.experiment, ending)
            return TrainingOutcome(self.experiment, ending, trained_model=model, settings=self.settings)
        record_ending(self.experiment, finished(), stopped_early=bool(plan.early_stopping.stopped_epoch))
        return TrainingOutcome(self.experiment, finished(), trained_model=model, settings=self.settings,
                               built=session.built())
