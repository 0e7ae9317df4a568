"""`experiments-manager train`: train a model from a settings file into a new experiment folder, or resume one."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Optional

from experiments_manager.commands.arguments import (add_bootstrap_servers_argument, add_hparam_argument,
                                                   add_trust_code_argument, positive_int)
from experiments_manager.serving.options import add_server_arguments
from experiments_manager.utils.command_name import command_name
from experiments_manager.utils.errors import UserInputError
from experiments_manager.run.requeue_file import add_requeue_file_argument
from experiments_manager.settings.script import SETTINGS_SOURCES
from experiments_manager.run.log import TRAIN_LOG_NAME, append
from experiments_manager.run.record import Status

if TYPE_CHECKING:
    import argparse
    from types import ModuleType

    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.requeue_file import RequeueFile
    from experiments_manager.run.reservation import FolderReservation
    from experiments_manager.settings import Settings
    from experiments_manager.training import TrainingOutcome

Alongside = Callable[["Experiment"], ContextManager[object]]  # what runs beside training, given its experiment

NAME = "train"

_LOG = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="train a new experiment, or resume one",
        description="Train a model from a settings file into a new experiment folder, or resume one.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-u", "--usersettings", metavar="SETTINGS", help="the settings module (.py)")
    source.add_argument(
        "--resume", "--model_dir", dest="resume", metavar="EXPERIMENT_DIR",
        help="continue this experiment from its last checkpoint",
    )
    extension = parser.add_mutually_exclusive_group()
    extension.add_argument(
        "--epochs", type=positive_int, metavar="N",
        help="with --resume: extend the run, finished or not, to N epochs in all, in place (its checkpoint, EMA, best "
        "value, early-stopping counter and export versions go on; recorded in run.json)",
    )
    extension.add_argument(
        "--more-epochs", type=positive_int, metavar="K", help="with --resume: extend the run by K more epochs",
    )
    parser.add_argument(
        "--init-from", metavar="RUN[:VERSION]",
        help="fine-tune: start the new run from the weights (EMA) of RUN's best exported version, or of VERSION; "
        "same architecture; the optimizer starts fresh (recorded in run.json as fine_tuned_from)",
    )
    parser.add_argument(
        "--skip-mismatch", action="store_true",
        help="with --init-from: load every weight whose shape fits the new model (a new head, another number of "
        "classes) and leave the others as the new model made them; lists them (log and run.json)",
    )
    add_hparam_argument(parser)
    parser.add_argument(
        "--settings-source", choices=SETTINGS_SOURCES, default="copy",
        help="with --resume: run the experiment's own copy of the settings and model files (default: the code it "
        "trained with; their `__file__` is still your file), or your original files, which replace the copies "
        "(recorded in run.json as an accepted code change)",
    )
    parser.add_argument(
        "--accept-code-change", action="store_true",
        help="with --resume: train on although the settings, the model file or a module of yours they import "
        "changed since the last attempt (refused otherwise; recorded in run.json)",
    )
    add_trust_code_argument(parser, "the run's (--resume) or the source run's (--init-from)")
    parser.add_argument(
        "--serve", action="store_true",
        help="serve the experiment's exported versions while it trains (a `serve` process beside training)",
    )
    parser.add_argument(
        "--keep-serving", action="store_true", help="with --serve: keep serving after training ends, until Ctrl-C"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=1, metavar="N",
        help="train with N cooperating processes on this machine (MultiWorkerMirroredStrategy over 127.0.0.1). "
        "Across nodes, start one process per node with TF_CONFIG set, or one per task with `srun`",
    )
    parser.add_argument(
        "--mlflow", nargs="?", const="", default=None, metavar="URI",
        help="log the run to an MLflow tracking server (without URI: MLFLOW_TRACKING_URI): its hparams, every "
        "epoch's metrics, its status and files, one MLflow run for all its attempts; a server that is down costs "
        f"training nothing: the run keeps what it could not send (`{command_name()} mlflow sync RUN`)",
    )
    add_requeue_file_argument(parser)
    add_bootstrap_servers_argument(parser)
    add_server_arguments(parser)
    return parser


def run(arguments: argparse.Namespace, argv: list[str]) -> int:
    """Trains (or resumes, or with --workers N starts N local workers); returns the exit code."""
    if arguments.workers > 1:
        from experiments_manager.distribute.local_workers import LocalWorkers, without_workers_flag

        return LocalWorkers(without_workers_flag(argv), arguments.workers).run()
    from experiments_manager.distribute.local_workers import stop_with_launcher
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.requeue_file import resume_remembered
    from experiments_manager.run.resume_plan import TrainFlags, is_federation
    from experiments_manager.settings.script import existing_settings_file

    stop_with_launcher()  # a worker of `train --workers N`: it goes when its launcher does
    from experiments_manager.settings.overrides import parse_hparam_overrides

    refusal = TrainFlags(resume=bool(arguments.resume), requeue_file=bool(arguments.requeue_file),
                         hparams=bool(arguments.hparam), epochs=arguments.epochs is not None,
                         more_epochs=bool(arguments.more_epochs), init_from=bool(arguments.init_from),
                         skip_mismatch=bool(arguments.skip_mismatch), accept_code_change=arguments.accept_code_change,
                         settings_source=arguments.settings_source, serve=bool(arguments.serve),
                         keep_serving=bool(arguments.keep_serving)).refusal()
    if refusal is not None:  # before a requeue file turns the command into a resume
        raise UserInputError(refusal)
    if arguments.mlflow is not None:  # before any folder is made
        from experiments_manager.tracking.options import tracking_uri

        arguments.mlflow = tracking_uri(arguments.mlflow)
    alongside = _serving_alongside(arguments) if arguments.serve else None
    arguments, requeue = resume_remembered(arguments, recorded={"hparam": [], "init_from": None,
                                                                  "skip_mismatch": False})  # the run's own
    if requeue is not None:
        alongside = _remembering(requeue, alongside)
    if arguments.resume:
        resumed_run = Experiment.open(arguments.resume, trust_code=arguments.trust_code)
        resumed_run.refuse_foreign_code()  # said at once, before TensorFlow is imported
        if is_federation(resumed_run.run_info()):  # it resumes as a federation, never as one training run
            return _resume_federation(arguments)
        _LOG.info("Resuming %s", arguments.resume)
        training = _import_training()
        outcome: TrainingOutcome = training.resume(arguments.resume, alongside=alongside,
                                                   kafka_bootstrap_servers=arguments.bootstrap_servers,
                                                   accept_code_change=arguments.accept_code_change,
                                                   settings_source=arguments.settings_source,
                                                   epochs=arguments.epochs, more_epochs=arguments.more_epochs,
                                                   mlflow=arguments.mlflow, trust_code=arguments.trust_code)
    else:
        overrides = parse_hparam_overrides(arguments.hparam)
        existing_settings_file(arguments.usersettings)  # said at once, before TensorFlow is imported
        with _reserved_folder(arguments.usersettings, overrides) as reservation:
            training = _import_training()
            from experiments_manager.settings import load_settings

            settings = load_settings(arguments.usersettings, overrides)  # executed once
            if settings.federated.enabled:
                return _simulate_federation(arguments, settings, requeue)
            outcome = training.train(settings, alongside=alongside, kafka_bootstrap_servers=arguments.bootstrap_servers,
                                     reservation=reservation, init_from=arguments.init_from,
                                     skip_mismatch=arguments.skip_mismatch, mlflow=arguments.mlflow,
                                     trust_code=arguments.trust_code)
    _report(outcome)
    return outcome.exit_code


def _import_training() -> ModuleType:
    """TensorFlow and the training package, imported with TensorFlow's start-up noise filtered."""
    from experiments_manager.utils.native_noise import import_tensorflow_quietly

    import_tensorflow_quietly()
    from experiments_manager import training

    return training


@contextlib.contextmanager
def _reserved_folder(settings_file: str, overrides: dict[str, Any]) -> Iterator[Optional[FolderReservation]]:
    """The new run's folder, created and announced before the settings file (and TensorFlow) is imported; removed
    if the run stops before using it. None for a worker that is not the chief, or a computed `workingFolder`."""
    from experiments_manager.distribute.cluster import WorkerCluster
    from experiments_manager.run.reservation import FolderReservation
    from experiments_manager.settings.overrides import split_new_hparams

    cluster = WorkerCluster.from_environment()
    reservation = None
    if cluster is None or cluster.is_chief:
        reservation = FolderReservation.reserve(settings_file, split_new_hparams(overrides)[0])  # named without `+`
    if reservation is not None:
        _LOG.info("Experiment folder: %s", reservation.root)
    try:
        yield reservation
    finally:
        if reservation is not None:
            reservation.release()


def _resume_federation(arguments: argparse.Namespace) -> int:
    """`train --resume RUN` of a federation's server folder: its rounds continue (`federated simulate --resume`);
    a flag only a training run takes is refused in one line, before anything is written. `--mlflow` is not: a
    requeued job repeats its first command line; the federation logs where its run.json says, as it started. Nor
    is `--accept-code-change` (a federation records no code to compare: its copies run)."""
    from experiments_manager.federated.entry_points import resume_command

    given = [flag for flag, value in (("--epochs", arguments.epochs is not None),
                                      ("--more-epochs", arguments.more_epochs is not None),
                                      ("--settings-source", arguments.settings_source != "copy"),
                                      ("--serve", arguments.serve),
                                      ("--bootstrap-servers", arguments.bootstrap_servers)) if value]
    if given:
        raise UserInputError(f"{', '.join(given)}: expected none for a federation's folder (it resumes its rounds as "
                             f"it started; `{command_name()} federated simulate --resume RUN --rounds R` extends it), "
                             f"got {', '.join(given)}")
    return resume_command(arguments.resume, trust_code=arguments.trust_code)


def _simulate_federation(arguments: argparse.Namespace, settings: Settings, requeue: Optional[RequeueFile]) -> int:
    """`train -u` of a federated settings file: the federation simulated on this machine; its exit code. With
    `--requeue-file`, its folder is remembered once made: a requeued job resumes its rounds."""
    from experiments_manager.distribute.cluster import WorkerCluster
    from experiments_manager.federated.entry_points import simulate_command
    from experiments_manager.training.entry_points import check_cluster

    check_cluster(WorkerCluster.from_environment(), settings)  # refused in a multi-worker cluster
    given = [flag for flag, value in (("--serve", arguments.serve), ("--bootstrap-servers", arguments.bootstrap_servers))
             if value]
    if given:
        raise UserInputError(f"{', '.join(given)}: expected none for a federated settings file, got "
                             f"{', '.join(given)} (serve the experiment folder with `{command_name()} serve`)")
    _LOG.info("%s sets enable_federated_learning = True: simulating the federation on this machine "
              "(see `%s federated --help` for deployment)", arguments.usersettings, command_name())
    return simulate_command(settings, mlflow=arguments.mlflow,
                            on_created=(lambda experiment: requeue.remember(experiment.root)) if requeue else None,
                            init_from=arguments.init_from, skip_mismatch=bool(arguments.skip_mismatch),
                            trust_code=arguments.trust_code)


def _remembering(requeue: RequeueFile, alongside: Optional[Alongside]) -> Alongside:
    """The `alongside` factory that first writes the new experiment's folder to the requeue file."""
    def remember_then(experiment: Experiment) -> ContextManager[object]:
        requeue.remember(experiment.root)
        return alongside(experiment) if alongside is not None else contextlib.nullcontext()

    return remember_then


def _serving_alongside(arguments: argparse.Namespace) -> Alongside:
    """`train --serve`: a factory for the serve process started once the experiment folder exists.

    The server flags are checked now, so a bad one stops the command before any folder is created.
    """
    from experiments_manager.serving.options import as_arguments, check_arguments, from_arguments
    from experiments_manager.serving.sidecar import ServingSidecar

    check_arguments(arguments)
    given = arguments.grpc_port is not None  # else the serve process takes the experiment's recorded port
    options = from_arguments(arguments, arguments.grpc_port if given else 0)
    forwarded = as_arguments(options, grpc_port_given=given)
    return lambda experiment: ServingSidecar(experiment, forwarded, keep_serving=arguments.keep_serving)


def _report(outcome: TrainingOutcome) -> None:
    experiment = outcome.experiment
    if experiment is None:  # a non-chief worker: the chief reports the experiment
        print(f"status:            {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else ""))
        return
    from experiments_manager.run.served_layout import present_versions
    from experiments_manager.run.version_records import reported_model, reported_version

    info = experiment.run_info()
    best, _ = reported_version(info, experiment.export_dir)
    newest = max(present_versions(experiment.export_dir), default=None)
    answers = "" if best == newest else (f"; it answers the newest version, {newest}, unless asked for version {best} "
                                         f"(REST: /v1/models/{info.get('model_name')}/versions/{best}:predict)")
    lines = [
        f"status:            {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else ""),
        f"experiment folder: {experiment.root}",
        f"best {info.get('monitored_loss_name')}: {info.get('best_value')} (epoch {info.get('best_epoch')})",
        f"exported model:    {reported_model(info, experiment.export_dir)}",
        f"served model name: {info.get('model_name')} ({command_name()} serve --model_dir {experiment.root})"
        f"{answers}",
        f"TF Serving config: {experiment.models_config}",
        f"training curves:   {experiment.curves_png}",
        f"TensorBoard:       tensorboard --logdir {experiment.root.parent}",
        f"console output:    {experiment.root / TRAIN_LOG_NAME}",
    ]
    from experiments_manager.tracking.sender import report_lines

    lines += report_lines(info, experiment.root)
    if outcome.status == Status.INTERRUPTED:
        lines.append(f"resume with:       {experiment.resume_hint()}")
    elif outcome.status == Status.FINISHED:
        lines.append(f"extend with:       {command_name()} train --resume {experiment.root} --more-epochs K")
    print("\n".join(lines))
    if outcome.trained:  # the attempt's part of train.log ends with it (nothing ran: no part, no summary)
        append(experiment.root, "\n".join(lines))
