"""The trainer: seeds, devices, strategy, model build, compile with EMA, fit, resume.

One `Trainer` runs one experiment. Drivers (federated, Kafka, sweeps) reuse it
rather than re-implementing training.
"""

import contextlib
import importlib.util
import logging
import math
import random
import signal
import sys
import uuid
import warnings

from experiments_manager.distribute.cluster import WorkerCluster
from experiments_manager.ema import WeightAverages, inner_optimizer
from experiments_manager.errors import EXIT_TEMPFAIL, InputStalled, UserInputError
from experiments_manager.experiment import Experiment, running_command
from experiments_manager.inputs import make_inputs
from experiments_manager.keras2_metrics import keras2_metrics
from experiments_manager.settings import as_settings, load_experiment_settings

_LOG = logging.getLogger(__name__)
SIGNAL_EXIT_BASE = 128
STALLED_EXIT_CODE = EXIT_TEMPFAIL  # the data stopped arriving; resume later


class TrainingOutcome:
    """What a training run ended with.

    Attributes:
        experiment: the `Experiment`.
        status: 'finished', 'interrupted' or 'failed' (as in run.json).
        exit_code: 0 when finished, 128 + signal when a signal interrupted it,
            75 when its input data stalled, 1 when failed.
        model: the trained Keras model (EMA weights in) when it finished in-process.
        reason: why it did not finish, or None.
    """

    def __init__(self, experiment, status, exit_code, model=None, reason=None):
        self.experiment = experiment
        self.status = status
        self.exit_code = exit_code
        self.model = model
        self.reason = reason


def train(settings, hparam_overrides=None, command=None, alongside=None, kafka_bootstrap_servers=None,
          working_folder=None):
    """Trains a new experiment from a settings file.

    Args:
        settings: the settings module file, or its `Settings` already loaded
            (the file is executed once: a caller that needed the settings first passes them on).
        hparam_overrides: dict merged into the settings' hparams (with a file).
        command: the command line recorded in run.json (default: this process').
        alongside: optional function experiment -> context manager kept open
            while training (e.g. a model server for `train --serve`).
        kafka_bootstrap_servers: 'host:port,...' overriding the settings'
            `kafka_bootstrap_servers` (used when `consume_data_from_kafka`).
        working_folder: the folder to create the experiment in (default: the
            settings' `workingFolder`; a sweep's trials go to the sweep folder).

    Returns:
        a `TrainingOutcome`.

    Example:

    ```python
    outcome = train("examples/regression/mysettings_curve_fitting.py", {"nbEpoch": 3})
    print(outcome.experiment.root, outcome.status)
    ```
    """
    cluster = WorkerCluster.from_environment()
    settings = as_settings(settings, hparam_overrides)
    _check_cluster(cluster, settings)
    servers = _check_inputs(settings, kafka_bootstrap_servers)
    if cluster is not None and not cluster.is_chief:
        return _train_as_worker(cluster, settings, resuming=False,
                                experiment_at=lambda root: Experiment.create(settings, command or running_command(),
                                                                             root=root))
    experiment = Experiment.create(settings, command or running_command(), parent=working_folder)
    if servers:
        experiment.update_run_info(kafka_bootstrap_servers=servers)
    _LOG.info("Experiment folder: %s", experiment.root)
    with _alongside(alongside, experiment):
        return Trainer(experiment, settings, cluster=cluster).run()


def _alongside(factory, experiment):
    return factory(experiment) if factory is not None else contextlib.nullcontext()


def _check_cluster(cluster, settings):
    """Multi-worker training covers the plain input pipeline only; says so before anything is written."""
    if cluster is None:
        return
    _LOG.info("Multi-worker training: this process is the %s", cluster.describe())
    for flag, name in ((settings.consume_data_from_kafka, "consume_data_from_kafka"),
                       (settings.enable_federated_learning, "enable_federated_learning")):
        if flag:
            raise UserInputError(f"{settings.path.name}: {name}: not supported with multi-worker training "
                                 f"({cluster.source} names {cluster.num_workers} workers); set it to False")


def _train_as_worker(cluster, settings, resuming, experiment_at):
    """A non-chief worker trains in step with the chief, in an experiment inside its scratch folder.

    Args:
        experiment_at: function folder -> the `Experiment` to train in there
            (a new one, or a replica of the chief's to resume).

    Returns:
        the `TrainingOutcome`, without the experiment (deleted with the scratch folder).
    """
    with cluster.scratch_folder() as scratch:
        experiment = experiment_at(scratch / "experiment")
        outcome = Trainer(experiment, settings, resuming=resuming, cluster=cluster).run()
    return TrainingOutcome(None, outcome.status, outcome.exit_code, reason=outcome.reason)


def _check_inputs(settings, kafka_bootstrap_servers):
    """Checks a Kafka input is reachable before anything is written; returns the servers it uses."""
    if not settings.consume_data_from_kafka:
        if kafka_bootstrap_servers:
            _LOG.warning("--bootstrap-servers: ignored (%s does not set consume_data_from_kafka = True)",
                         settings.path.name)
        return None
    from experiments_manager.kafka.inputs import check_kafka_input

    return check_kafka_input(settings, kafka_bootstrap_servers)


def resume(experiment_dir, command=None, alongside=None, kafka_bootstrap_servers=None):
    """Continues an experiment from its last checkpoint (or from scratch if it has none).

    Uses the experiment's own copy of the settings and of the model file, and
    the hparam overrides and Kafka servers recorded in its run.json
    (`kafka_bootstrap_servers` replaces the latter).

    Example:

    ```python
    outcome = resume("experiments/curve_fitting/my_test_2026-11-21--10-00-00")
    ```
    """
    cluster = WorkerCluster.from_environment()
    experiment = Experiment.open(experiment_dir)
    info = experiment.run_info()
    if info.get("status") == "finished":
        _LOG.info("%s already finished: nothing to resume", experiment.root)
        return TrainingOutcome(experiment if cluster is None or cluster.is_chief else None, "finished", 0)
    settings = load_experiment_settings(experiment)
    _check_cluster(cluster, settings)
    if cluster is not None and not cluster.is_chief:
        return _train_as_worker(cluster, settings, resuming=True, experiment_at=experiment.replica)
    servers = _check_inputs(settings, kafka_bootstrap_servers or info.get("kafka_bootstrap_servers"))
    experiment.mark_resumed(command or running_command())
    if servers:
        experiment.update_run_info(kafka_bootstrap_servers=servers)
    with _alongside(alongside, experiment):
        return Trainer(experiment, settings, resuming=True, cluster=cluster).run()


class Trainer:
    """Trains the model of one experiment.

    Args:
        experiment: the `Experiment` folder to write to.
        settings: the loaded `Settings`.
        resuming: restore the last checkpoint first.
        partition: a federated client's `DataPartition`, or None.
        cluster: the `WorkerCluster` of a multi-worker run, or None.
    """

    def __init__(self, experiment, settings, resuming=False, partition=None, cluster=None):
        self.experiment = experiment
        self.settings = settings
        self.resuming = resuming
        self.partition = partition
        self.cluster = cluster

    def run(self):
        """Trains; returns a `TrainingOutcome`. Marks run.json failed on any error.

        A KeyboardInterrupt (a second Ctrl-C, or one before training started, raised at once wherever
        training is) is the user's interruption: the run is marked `interrupted` (exit code 130, resumed
        from its last checkpoint) and the KeyboardInterrupt goes on to the caller.
        """
        try:
            return self._run()
        except KeyboardInterrupt:
            self._interrupted(None, "Ctrl-C (SIGINT) stopped it at once", SIGNAL_EXIT_BASE + int(signal.SIGINT))
            raise
        except BaseException as error:
            self.experiment.mark_ended("failed", error=f"{type(error).__name__}: {error}")
            raise

    def _run(self):
        try:
            session = self.open_session()
        except InputStalled as stall:
            return self._interrupted(None, str(stall), STALLED_EXIT_CODE)
        with contextlib.closing(session):
            history, stopped = self.fit(session, self.settings.nbEpoch)
        if stopped is not None:
            return stopped
        return self._finished(session.model, history, session.plan)

    def open_session(self, federated_client=False):
        """Seeds, builds the inputs, the compiled model and its callbacks; restores the last checkpoint when resuming.

        Args:
            federated_client: a Flower client's session: no exports and no
                early stopping (the federation decides when training ends).

        Returns:
            a `TrainingSession` (close it when done).

        Raises:
            InputStalled: the input data did not arrive.
        """
        import keras

        settings = self.settings
        strategy = self._strategy()  # first: a multi-worker strategy must exist before any TensorFlow op
        seed = self._seed(strategy)
        keras.utils.set_random_seed(seed)
        with _precision_policy(settings.enable_mixed_precision):
            # inputs first: the settings' pipelines draw from the seeded generators before the model
            inputs = make_inputs(self.experiment, settings, self._saved_state(), seed, self.partition)
            try:
                with strategy.scope():
                    model, learning_rate, averages = self._compiled_model()
                restored = self._restore(model)
                plan = _CallbackPlan(self.experiment, settings, model, inputs, restored, averages,
                                     reduce_lr_on_plateau=_plateau_can_set(model.optimizer, learning_rate),
                                     federated_client=federated_client,
                                     stop_agreement=strategy.any_worker if self.cluster is not None else None)
            except BaseException:
                inputs.close()
                raise
        plan.history.truncate(plan.initial_epoch)  # a resumed run redoes the epoch in progress
        return TrainingSession(model, inputs, plan, averages)

    def fit(self, session, epochs, extra_callbacks=()):
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
                    validation_data=inputs.val,
                    epochs=epochs,
                    initial_epoch=plan.epochs_completed(),
                    steps_per_epoch=inputs.train_steps,
                    validation_steps=inputs.val_steps,
                    shuffle=False,  # datasets come shuffled (or not) from get_input_pipeline
                    callbacks=plan.callbacks + list(extra_callbacks),
                    verbose=1 if sys.stdout.isatty() else 2,
                )
            except TrainingInterrupted as interruption:
                return None, self._interrupted(plan, str(interruption), SIGNAL_EXIT_BASE + int(interruption.signum))
            except Exception as error:
                stall = inputs.stall_of(error)
                if stall is None:
                    raise
                return None, self._interrupted(plan, str(stall), STALLED_EXIT_CODE)
        return history, None

    def _seed(self, strategy):
        recorded = self.experiment.run_info().get("seed")
        seed = recorded if recorded is not None else self.settings.random_seed
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        if self.cluster is not None:  # one seed for all: the workers' shuffles must shard the same order
            seed = strategy.chief_value(seed)
        self.experiment.update_run_info(
            seed=seed, xla=self.settings.useXLA, mixed_precision=self.settings.enable_mixed_precision
        )
        return seed

    def _strategy(self):
        from experiments_manager.distribute.devices import make_strategy, select_devices

        name = self.settings.path.name
        devices = select_devices(self.settings.used_gpu_IDs, name)
        if self.cluster is None:
            self.experiment.update_run_info(devices=devices)
            return make_strategy(self.settings.distribution_strategy, devices, name)
        self.experiment.update_run_info(devices=devices, workers=self.cluster.num_workers,
                                        cluster_source=self.cluster.source,
                                        distribution_strategy="MultiWorkerMirroredStrategy")
        return self.cluster.make_strategy()

    def _compiled_model(self):
        settings = self.settings
        model = build_model(settings)
        loss = settings.get_total_loss(model)
        learning_rate = settings.get_learningRate()
        optimizer = settings.get_optimizer(model, loss, learning_rate)
        self._record_learning_rate(optimizer, learning_rate)
        averages = None
        if settings.weights_moving_averages:
            averages = WeightAverages(settings.ema_momentum, warmup=settings.ema_warmup)
            optimizer = averages.attach(optimizer)
        metrics = keras2_metrics(settings.get_metrics(model, loss), model, settings.path.name)
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=settings.useXLA)
        model.optimizer.build(model.trainable_variables)
        return model, learning_rate, averages

    def _record_learning_rate(self, optimizer, asked):
        """Records the rate the optimizer trains at, and says so when it is not `get_learningRate()`'s
        (a Keras 2 `lr=` that Keras ignored, say): hparams and sweeps would record the other one."""
        rate = _fixed_learning_rate(optimizer)
        if rate is None:
            return  # a schedule
        self.experiment.update_run_info(learning_rate=rate)
        if isinstance(asked, (int, float)) and not math.isclose(rate, asked, rel_tol=1e-5):
            _LOG.warning("%s: get_optimizer: the optimizer trains at learning_rate=%g, not at %g from "
                         "get_learningRate() (which hparams and sweeps record); pass it the learning_rate argument",
                         self.settings.path.name, rate, asked)

    def _saved_state(self):
        """The last checkpoint's state (epochs, callbacks, Kafka position), read before the model exists."""
        from experiments_manager.checkpointing import Checkpointer

        return Checkpointer(self.experiment.checkpoints_dir).latest_state() if self.resuming else None

    def _restore(self, model):
        from experiments_manager.checkpointing import Checkpointer

        if not self.resuming:
            return None
        state = Checkpointer(self.experiment.checkpoints_dir).restore_latest(model, model.optimizer)
        if state is None:
            _LOG.info("No checkpoint in %s: training from the first epoch", self.experiment.root)
        else:
            _LOG.info("Resuming after epoch %d", state["epochs_completed"])
        return state

    def _interrupted(self, plan, reason, code):
        """Checkpoints what was trained (if a step boundary was reached) and marks the run interrupted."""
        if plan is not None:
            plan.checkpoint.save(plan.epochs_completed())
            done = f"checkpointed after {plan.epochs_completed()} epochs"
        else:  # stopped before fit or in the middle of a step: the last checkpoint stands
            from experiments_manager.checkpointing import Checkpointer

            saved = Checkpointer(self.experiment.checkpoints_dir).latest_state()
            done = (f"its last checkpoint is after epoch {saved['epochs_completed']}" if saved
                    else "no checkpoint yet: a resume starts from the first epoch")
        self.experiment.mark_ended("interrupted", reason=reason, exit_code=code)
        _LOG.warning("%s: %s; resume with: experiments-manager train --resume %s", reason, done, self.experiment.root)
        return TrainingOutcome(self.experiment, "interrupted", code, reason=reason)

    def _finished(self, model, history, plan):
        losses = history.history.get("loss", [])
        if any(not math.isfinite(value) for value in losses):
            reason = f"loss became NaN or infinite at epoch {len(losses) + plan.initial_epoch}"
            self.experiment.mark_ended("failed", error=reason)
            return TrainingOutcome(self.experiment, "failed", 1, model=model, reason=reason)
        self.experiment.mark_ended("finished", stopped_early=bool(plan.early_stopping.stopped_epoch))
        return TrainingOutcome(self.experiment, "finished", 0, model=model)


class TrainingSession:
    """What one run trains with: the compiled model, its inputs and its callbacks.

    Attributes:
        model: the compiled Keras model.
        inputs: the input object (see `experiments_manager.inputs`).
        plan: the callbacks, with the run's best value, checkpoint and epoch count.
        averages: the `WeightAverages` (EMA) of the run, or None without EMA.
    """

    def __init__(self, model, inputs, plan, averages=None):
        self.model = model
        self.inputs = inputs
        self.plan = plan
        self.averages = averages

    def close(self):
        self.inputs.close()


def build_model(settings):
    """Imports the model file under a unique name and calls `model(usersettings)`."""
    import keras

    spec = importlib.util.spec_from_file_location(f"experiments_manager_model_{uuid.uuid4().hex}", settings.model_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    model = module.model(settings.module)
    if not isinstance(model, keras.Model):
        raise UserInputError(f"{settings.model_file.name}: model: expected a keras.Model, got {type(model).__name__}")
    return model


def _plateau_can_set(optimizer, learning_rate):
    """LR-on-plateau only for a plain learning rate: a schedule owns it otherwise (the settings' own, or
    a Keras 2 legacy optimizer's `decay`), and Keras refuses to set it."""
    return isinstance(learning_rate, (int, float)) and _fixed_learning_rate(optimizer) is not None


def _fixed_learning_rate(optimizer):
    """The optimizer's learning rate as a float, or None when a schedule gives it."""
    rate = inner_optimizer(optimizer).get_config().get("learning_rate")
    return float(rate) if isinstance(rate, (int, float)) else None


@contextlib.contextmanager
def _precision_policy(mixed):
    """Sets Keras' global dtype policy to mixed_float16 for the block, then restores it."""
    import keras

    previous = keras.config.dtype_policy()
    if mixed:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class _CallbackPlan:
    """The callbacks of a run, in the order their work depends on."""

    def __init__(self, experiment, settings, model, inputs, restored, averages, reduce_lr_on_plateau,
                 federated_client=False, stop_agreement=None):
        import keras

        from experiments_manager import callbacks as ours
        from experiments_manager.checkpointing import Checkpointer
        from experiments_manager.export import Exporter

        train_data, val_data = inputs.train, inputs.val
        monitor = settings.monitored_loss_name
        self.initial_epoch = restored["epochs_completed"] if restored else 0
        self.history = ours.HistoryCSV(experiment.history_csv)
        self.best = ours.BestValue(monitor)
        self.early_stopping = ours.ResumableEarlyStopping(
            monitor=monitor, mode=self.best.mode, patience=settings.early_stopping_patience, verbose=1
        )
        self.stop_on_signal = ours.StopOnSignal(agree=stop_agreement)
        self.exporter = None if federated_client else Exporter(experiment, settings, model)
        stateful = {"best": self.best, "early_stopping": self.early_stopping}
        monitors = [self.early_stopping]
        plateau = []
        if reduce_lr_on_plateau:  # a schedule owns the learning rate otherwise
            reduce_lr = ours.ResumableReduceLROnPlateau(
                monitor=monitor, mode=self.best.mode, factor=0.5,
                patience=max(1, settings.early_stopping_patience // 2), min_lr=1e-7, verbose=1,
            )
            stateful["reduce_lr"] = reduce_lr
            monitors.append(reduce_lr)
            plateau = [reduce_lr]
        if restored:
            for name, state in restored.get("callbacks", {}).items():
                if name in stateful:
                    stateful[name].set_state(state)
        self.checkpoint = ours.TrainingCheckpoint(Checkpointer(experiment.checkpoints_dir),
                                                  {**stateful, **inputs.stateful}, inputs.after_checkpoint)
        averaging = []
        if averages is not None:  # validation sees the EMA weights; the raw ones are validated beside them
            averaging = [keras.callbacks.SwapEMAWeights()]
            if settings.validate_raw_weights and not federated_client:  # a client's validation stays there
                if inputs.val_restartable:
                    averaging.append(ours.RawWeightsValidation(val_data, inputs.val_steps))
                else:
                    _LOG.info("%s: the validation data is a generator that cannot be read twice per epoch: "
                              "val_*_raw not logged", settings.path.name)
        self.callbacks = (
            [self.stop_on_signal]
            + averaging
            + [ours.monitor_mode_resolver(self.best, experiment, settings, monitors),
               keras.callbacks.TerminateOnNaN(), ours.LearningRateLogger()]
            + inputs.callbacks
            + _profiler(settings, experiment, inputs.train_steps or int(train_data.cardinality()))
            + [self.history, ours.TrackBestValue(self.best, settings.path.name)]
            + tensorboard_reports(experiment, settings, self.best, restored)
            + ([] if federated_client else [self.early_stopping])
            + plateau
            + _user_callbacks(settings, model, train_data, val_data, experiment)
            + [*([] if federated_client else [
                   ours.ExportOnImprovement(self.exporter, self.best, every_epoch=not settings.save_only_last_best_model)]),
               self.checkpoint,
               ours.RunInfoUpdater(experiment, self.best, self.exporter),
               ours.ProjectorLogger(str(experiment.logs_dir / "validation"), val_data)]
        )

    def epochs_completed(self):
        """Epochs fully done so far (the epoch in progress is redone on resume)."""
        return self.checkpoint.epochs_completed if self.checkpoint.epochs_completed is not None else self.initial_epoch


def tensorboard_reports(experiment, settings, best, restored=None):
    """The callbacks showing a run (or a federation's rounds) in TensorBoard and training_curves.png.

    Placed after `HistoryCSV` and `TrackBestValue`: they read the epoch's logs
    (with the learning rate and raw-weights validation added) and the best value.

    Args:
        experiment: the `Experiment`.
        settings: the loaded `Settings`.
        best: the run's `BestValue`.
        restored: the checkpoint state a resumed run started from, or None.
    """
    from experiments_manager import callbacks as ours

    writers = ours.SummaryWriters(experiment.logs_dir)  # one event file per run folder
    histograms = [ours.WeightHistograms(writers, settings.histogram_freq)] if settings.histogram_freq else []
    return [ours.EpochScalars(writers),
            ours.ModelGraph(writers),
            *histograms,
            ours.TrainingCurves(experiment.history_csv, experiment.curves_png, best, title=experiment.name),
            ours.HParamsLogger(writers, settings.hparams, best, experiment.label(),
                               write_session_start=not restored)]


def _profiler(settings, experiment, steps_per_epoch):
    """A few mid-epoch steps profiled, when the settings ask for it."""
    from experiments_manager.callbacks import StepProfiler

    if not settings.use_profiling:
        return []
    start = max(2, steps_per_epoch // 2)
    return [StepProfiler(experiment.logs_dir, start, start + 3)]


def _user_callbacks(settings, model, train_data, val_data, experiment):
    import keras

    found = []
    if settings.addon_callbacks is not None:
        added = settings.addon_callbacks(model, train_data, val_data)
        found = list(added.values()) if isinstance(added, dict) else list(added or [])
    if settings.custom_tensorboard_logs is not None:
        import tensorflow as tf

        writer = tf.summary.create_file_writer(str(experiment.logs_dir / "custom"))

        def log_custom(epoch, logs):
            with writer.as_default():
                settings.custom_tensorboard_logs(model, epoch, logs)

        found.append(keras.callbacks.LambdaCallback(on_epoch_end=log_custom))
    return found
