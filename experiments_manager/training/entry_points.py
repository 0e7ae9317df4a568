"""The public entry points: `train` a new experiment, `resume` one; a multi-worker run's workers routed.

Example:

```python
import experiments_manager as em

outcome = em.train("examples/regression/mysettings_curve_fitting.py", {"nbEpoch": 3})
em.resume(outcome.experiment.root)
```
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Mapping, Optional, Sequence

from experiments_manager.distribute.cluster import WorkerCluster
from experiments_manager.utils.errors import UserInputError
from experiments_manager.run.experiment import Experiment, running_command
from experiments_manager.run.endings import finished
from experiments_manager.run.lifecycle import attempt, new_run, resumed
from experiments_manager.run.resume_plan import (ResumePlan, ResumeRequest, ResumeRole, ResumeStep, RunFolderState,
                                                 plan_resume)
from experiments_manager.settings import as_settings, load_experiment_settings
from experiments_manager.settings.script import replace_copy
from experiments_manager.settings.sections import user_name
from experiments_manager.training.fine_tuning import SKIP_MISMATCH_OPTION, InitialWeights
from experiments_manager.training.outcome import TrainingOutcome
from experiments_manager.training.prepared_run import prepare_run
from experiments_manager.training.trainer import Trainer
from experiments_manager.tracking.options import run_tracking_uri, tracking_uri
from experiments_manager.tracking.session import tracked

if TYPE_CHECKING:
    from pathlib import Path

    from experiments_manager.run.reservation import FolderReservation
    from experiments_manager.settings.loader import Settings
    from experiments_manager.training.built_model import BuiltModel
    from experiments_manager.utils.atomic import PathLike

    Alongside = Callable[[Experiment], ContextManager[object]]  # `train --serve`'s model server, say

_LOG = logging.getLogger(__name__)


def train(settings: object, hparam_overrides: Optional[Mapping[str, Any]] = None,
          command: Optional[Sequence[str]] = None, alongside: Optional[Alongside] = None,
          kafka_bootstrap_servers: Optional[str] = None, working_folder: Optional[PathLike] = None,
          reservation: Optional[FolderReservation] = None, init_from: Optional[PathLike] = None,
          skip_mismatch: bool = False, mlflow: Optional[str] = None, trust_code: bool = False) -> TrainingOutcome:
    """Trains a new experiment from a settings file.

    Args:
        settings: the settings module file, its `Settings` already loaded (the file is executed once: a caller
            that needed the settings first passes them on), or a settings module / class / object built in
            Python (see `settings.settings_from_object`).
        hparam_overrides: dict merged into the settings' hparams (with a file).
        command: the command line recorded in run.json (default: this process').
        alongside: optional function experiment -> context manager kept open
            while training (e.g. a model server for `train --serve`).
        kafka_bootstrap_servers: 'host:port,...' overriding the settings'
            `kafka_bootstrap_servers` (used when `consume_data_from_kafka`).
        working_folder: the folder to create the experiment in (default: the
            settings' `workingFolder`; a sweep's trials go to the sweep folder).
        reservation: the `FolderReservation` the command line made and announced before loading the settings
            (default None): the experiment goes there when the settings name it.
        init_from: fine-tune: start from the weights of another run's version, 'RUN' (its best) or
            'RUN:VERSION' (default None: the model's own initial weights). See `fine_tuning.py`.
        skip_mismatch: with `init_from`, leave the weights whose shape does not fit as the new model made them,
            and list them (default False: refuse them).
        mlflow: log the run to this MLflow tracking server ('' : MLFLOW_TRACKING_URI; default None: not logged).
        trust_code: with `init_from`, run the source run's copies although another user owns them (default False:
            refused in one line).

    Returns:
        a `TrainingOutcome`.

    Example:

    ```python
    outcome = train("examples/regression/mysettings_curve_fitting.py", {"nbEpoch": 3})
    print(outcome.experiment.root, outcome.status)
    ```
    """
    cluster = WorkerCluster.from_environment()
    if mlflow is not None:
        tracking_uri(mlflow)  # before the settings are loaded
    settings = as_settings(settings, hparam_overrides)
    tracking_at = tracking_of(settings, mlflow)
    if skip_mismatch and init_from is None:
        raise UserInputError(f"{SKIP_MISMATCH_OPTION}: only with --init-from RUN (the weights it loads)")
    initial = InitialWeights.parse(init_from, skip_mismatch, trust_code) if init_from is not None else None
    check_cluster(cluster, settings)
    servers = _check_inputs(settings, kafka_bootstrap_servers)
    if cluster is not None and not cluster.is_chief:
        return _train_as_worker(cluster, settings, resuming=False,
                                experiment_at=lambda root: Experiment.create(settings, command or running_command(),
                                                                             root=root), init_from=initial)
    prepared = None
    if cluster is None:  # a multi-worker strategy must exist before any TensorFlow op: no dry build there
        # a broken settings file is one line per problem, and no `failed` folder
        prepared = prepare_run(settings, initial)  # the model that trains, built and checked
        if prepared is None:  # (a Kafka input, a model with its own train_step): checked on a model of its own
            _dry_build(settings, initial)
    command = command or running_command()
    with new_run(settings, command, parent=working_folder, reservation=reservation) as experiment:
        if servers:
            experiment.record.kafka_servers(servers)
        if initial is not None:
            experiment.record.fine_tuned_from(initial.as_json())
        if reservation is None or experiment.root != reservation.root:  # else said before the settings were loaded
            _LOG.info("Experiment folder: %s", experiment.root)
        # beside training first (a sweep's trial records its sweep, which MLflow's run is a child of)
        with (_alongside(alongside, experiment),
              tracked(experiment, tracking_at, settings.tracking.mlflow_experiment,
                      settings.tracking.mlflow_registered_model) as tracking):
            return Trainer(experiment, settings, cluster=cluster, init_from=initial, tracking=tracking,
                           prepared=prepared).run()


def _dry_build(settings: Settings, initial_weights: Optional[InitialWeights] = None,
               resumed_from: Optional[Experiment] = None) -> None:
    """Devices first (TensorFlow fixes them at its first op), then everything the settings define, built once (and
    the checkpoint a resume of `resumed_from` continues from checked against the model)."""
    from experiments_manager.distribute.devices import select_devices
    from experiments_manager.training.dry_build import dry_build

    select_devices(settings.runtime.gpu_ids, settings.path.name)
    dry_build(settings, initial_weights, resumed_from)


def _alongside(factory: Optional[Alongside], experiment: Experiment) -> ContextManager[object]:
    return factory(experiment) if factory is not None else contextlib.nullcontext()


def check_cluster(cluster: Optional[WorkerCluster], settings: Settings) -> None:
    """Multi-worker training covers the plain input pipeline only (no Kafka input, no federated learning): one
    line naming the setting, before anything is written. `cluster`: `WorkerCluster.from_environment()`."""
    if cluster is None:
        return
    _LOG.info("Multi-worker training: this process is the %s", cluster.describe())
    for flag, name in ((settings.kafka.enabled, user_name("kafka", "enabled")),
                       (settings.federated.enabled, user_name("federated", "enabled"))):
        if flag:
            raise UserInputError(f"{settings.path.name}: {name}: not supported with multi-worker training "
                                 f"({cluster.source} names {cluster.num_workers} workers); set it to False")


def _train_as_worker(cluster: WorkerCluster, settings: Settings, resuming: bool,
                     experiment_at: Callable[[Path], Experiment],
                     init_from: Optional[InitialWeights] = None) -> TrainingOutcome:
    """A non-chief worker trains in step with the chief, in an experiment inside its scratch folder.

    Args:
        experiment_at: function folder -> the `Experiment` to train in there
            (a new one, or a replica of the chief's to resume).
        init_from: a fine-tuned run's `InitialWeights` (default None).

    Returns:
        the `TrainingOutcome`, without the experiment (deleted with the scratch folder).
    """
    with cluster.scratch_folder() as scratch:
        experiment = experiment_at(scratch / "experiment")
        outcome = Trainer(experiment, settings, resuming=resuming, cluster=cluster, init_from=init_from).run()
    return TrainingOutcome(None, outcome.ending)


def tracking_of(settings: Settings, mlflow: Optional[str]) -> Optional[str]:
    """The MLflow server a new run of `settings` logs to: `mlflow` (`--mlflow`; '': MLFLOW_TRACKING_URI), else the
    settings' `mlflow_tracking_uri`, else None; checked (one line naming the flag or the setting)."""
    return run_tracking_uri(mlflow, settings.tracking.mlflow_tracking_uri,
                            f"{settings.path.name}: {user_name('tracking', 'mlflow_tracking_uri')}")


def _check_inputs(settings: Settings, kafka_bootstrap_servers: Optional[str]) -> Optional[str]:
    """Checks a Kafka input is reachable before anything is written; returns the servers it uses."""
    if not settings.kafka.enabled:
        if kafka_bootstrap_servers:
            _LOG.warning("--bootstrap-servers: ignored (%s does not set consume_data_from_kafka = True)",
                         settings.path.name)
        return None
    from experiments_manager.kafka.kafka_input import check_kafka_input

    return check_kafka_input(settings, kafka_bootstrap_servers)


def resume(experiment_dir: PathLike, command: Optional[Sequence[str]] = None, alongside: Optional[Alongside] = None,
           kafka_bootstrap_servers: Optional[str] = None, settings: object = None, accept_code_change: bool = False,
           settings_source: str = "copy", epochs: Optional[int] = None,
           more_epochs: Optional[int] = None, mlflow: Optional[str] = None,
           warm: Optional[BuiltModel] = None, trust_code: bool = False) -> TrainingOutcome:
    """Continues an experiment from its last checkpoint (or from scratch if it has none); extends it with `epochs`.

    Resume is "run again in the same folder": what the folder holds and what is asked make one `ResumePlan`
    (`run/resume_plan.py`: the rules on the run's state and the flags), which `Resumption` carries out.

    Uses the experiment's own copy of the settings and of the model file, and
    the hparam overrides and Kafka servers recorded in its run.json
    (`kafka_bootstrap_servers` replaces the latter). An experiment whose settings were built in Python is
    given them again: `settings`. Code that changed since the last attempt (the copies, the user's modules they
    import) is refused in one line, unless `accept_code_change` (recorded in the new attempt).

    The copies run as the user's files (`__file__`, importable folder); a user's file edited since is named in one
    line. `settings_source="original"` runs the user's files instead: they replace the copies, recorded in the
    new attempt as an accepted code change.

    Args:
        experiment_dir: the experiment folder.
        command: the command line recorded in run.json (default: this process').
        alongside: optional function experiment -> context manager kept open while training (`train --serve`).
        kafka_bootstrap_servers, accept_code_change, settings_source, epochs, more_epochs: the `ResumeRequest`'s
            (see there). `epochs` extends the run, finished or not, in place: its EMA, best value, early-stopping
            and LR-on-plateau counters and export versions go on; the attempt records `epochs` and `extended_from`.
        settings: for an experiment whose settings were built in Python, the same settings again (default None).
        mlflow: log to this MLflow tracking server ('' : MLFLOW_TRACKING_URI; default None: the server run.json
            names, if the run was logged).
        warm: the model this process trained the run with last (`TrainingOutcome.built`: a sweep trial's previous
            rung, in a warm trial host), continued instead of a new one when the code is unchanged: its checkpoint
            is restored into it, its traced functions and its versions' template are reused (default None).
        trust_code: run the folder's copies although another user owns them (`--trust-code`; default False:
            refused in one line, `Experiment.refuse_foreign_code`).

    Example:

    ```python
    outcome = resume("experiments/curve_fitting/my_test_2026-11-21--10-00-00")
    resume("experiments/curve_fitting/my_test_2026-11-21--10-00-00", epochs=20)   # 10 more epochs of a 10-epoch run
    ```
    """
    cluster = WorkerCluster.from_environment()
    request = ResumeRequest(epochs, more_epochs, accept_code_change, settings_source, kafka_bootstrap_servers,
                            tracking_uri(mlflow) if mlflow is not None else None)  # checked before anything is written
    experiment = Experiment.open(experiment_dir, trust_code=trust_code)
    experiment.refuse_foreign_code()  # before anything is written, or any of its code runs
    experiment.refuse_links()  # (`lifecycle.attempt` checks again, as any writer)
    experiment.refuse_lost_checkpoints()
    # what refuses the resume is found before anything is written: a refused resume leaves the run as it was
    plan = plan_resume(RunFolderState.read(experiment, request), request,
                       ResumeRole.ALONE if cluster is None else ResumeRole.CHIEF if cluster.is_chief else
                       ResumeRole.WORKER)
    return Resumption(experiment, plan, cluster, settings, command or running_command(), alongside, warm).run()


@dataclasses.dataclass(frozen=True)
class Resumption:
    """Carries out a `ResumePlan` in its run's folder: a finished run reported, a worker's replica trained, or a new
    attempt (its lease taken, the settings loaded, the attempt recorded, the trainer restoring the checkpoint).

    Args:
        experiment: the opened `Experiment`.
        plan: its `ResumePlan`.
        cluster: the `WorkerCluster` of a multi-worker run, or None.
        settings: the settings of a run built in Python, given again, or None.
        command: this process' command line.
        alongside: function experiment -> context manager kept open while training, or None.
        warm: the model this process trained the run with last, or None (`resume`'s).
    """

    experiment: Experiment
    plan: ResumePlan
    cluster: Optional[WorkerCluster]
    settings: object
    command: Sequence[str]
    alongside: Optional[Alongside]
    warm: Optional[BuiltModel] = None

    def run(self) -> TrainingOutcome:
        """Carries the plan out; returns the `TrainingOutcome`."""
        if self.plan.step is ResumeStep.REPORT_FINISHED:
            return self._report_finished()
        if self.plan.step is ResumeStep.TRAIN_AS_WORKER:  # trains in a private replica: the chief writes the folder
            assert self.cluster is not None  # the plan's role was the worker's
            return _train_as_worker(self.cluster, self._settings(), resuming=True,
                                    experiment_at=self.experiment.replica,
                                    init_from=InitialWeights.recorded(self.plan.record, self.experiment.trust_code))
        return self._train()

    def _report_finished(self) -> TrainingOutcome:
        experiment, plan = self.experiment, self.plan
        _LOG.info("%s already finished: nothing to resume (extend it with --epochs N)", experiment.root)
        if plan.send_tracking_left:
            from experiments_manager.tracking.sync import send_what_is_left

            for line in send_what_is_left(experiment.root, plan.tracking_uri):  # what a kill cut short
                _LOG.info("%s", line)
        given = load_experiment_settings(experiment, self.settings) if self.settings is not None else None
        chief = self.cluster is None or self.cluster.is_chief
        return TrainingOutcome(experiment if chief else None, finished(), settings=given, trained=False)

    def _settings(self, announce: bool = False) -> Settings:
        """The run's settings (its copies, or the user's files), checked for the cluster, trained to the plan's
        epochs."""
        settings = load_experiment_settings(self.experiment, self.settings, announce=announce,
                                            source=self.plan.settings_source)
        check_cluster(self.cluster, settings)
        if self.plan.epochs is not None:
            settings.train_for(self.plan.epochs)
        return settings

    def _train(self) -> TrainingOutcome:
        experiment, plan, command = self.experiment, self.plan, self.command
        settings = self._settings(announce=True)
        servers = _check_inputs(settings, plan.kafka_bootstrap_servers)
        if plan.dry_build:  # the model may differ from its checkpoint's
            _dry_build(settings, resumed_from=experiment)
        changes = list(plan.code_changes)
        # one writer: a second resume (a double requeue) is refused, in one line
        with attempt(experiment, command):
            if changes:
                _LOG.warning("Resuming with changed code (accepted): %s", ", ".join(changes))
            if plan.settings_source == "original":  # loaded and checked: the user's files become the run's copies
                replaced = (replace_copy(experiment.settings_copy, settings.path),
                            replace_copy(experiment.model_file_copy(), settings.model_file))
                changes += [line for line in replaced if line]
            resumed(experiment, command, accepted_code_change=changes, epochs=plan.epochs,
                    extended_from=plan.extended_from)
            if plan.extended_from is not None:
                _LOG.info("Extending %s from %d to %d epochs", experiment.root, plan.extended_from, plan.epochs)
            if servers:
                experiment.record.kafka_servers(servers)
            # the model of its last rung, in this process: continued when nothing it was built from changed
            warm = self.warm if not (changes or plan.dry_build or self.cluster is not None) else None
            with _alongside(self.alongside, experiment), tracked(experiment, plan.tracking_uri) as tracking:
                return Trainer(experiment, settings, resuming=True, cluster=self.cluster,
                               init_from=InitialWeights.recorded(plan.record, experiment.trust_code),
                               tracking=tracking, warm=warm).run()
