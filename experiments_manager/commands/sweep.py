"""`experiments-manager sweep`: a hyperopt search where every trial is an experiment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments_manager.commands.arguments import add_hparam_argument, add_trust_code_argument, positive_int
from experiments_manager.run.requeue_file import add_requeue_file_argument
from experiments_manager.sweeps import ALGORITHMS, SCHEDULERS

if TYPE_CHECKING:
    import argparse

    from experiments_manager.sweeps.request import SweepRequest

NAME = "sweep"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="search hparams with hyperopt: every trial is an experiment",
        description="Search the settings' hyperopt_space with hyperopt. Every trial trains a normal experiment "
        "in its own process and is scored by its best monitored value. The sweep folder "
        "(<workingFolder>/<session_name>_sweep_<time>/) keeps the Trials, results.csv and a plot of the loss "
        "against each hparam; --resume continues a stopped sweep without training finished trials again. "
        "--workers N trains N trials at once here; --join NAME lets any number of processes (the tasks of a Slurm "
        "array, on many nodes) share one sweep folder: each is a worker, and a trial whose worker is gone is taken "
        "over by another and continues from its checkpoint.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-u", "--usersettings", metavar="SETTINGS", help="the settings module (.py) with hyperopt_space")
    source.add_argument("--resume", metavar="SWEEP_DIR", help="continue this sweep")
    parser.add_argument("--max-evals", type=positive_int, metavar="N",
                        help="trials in all (required for a new sweep; with --resume: raise the total)")
    parser.add_argument("--algo", choices=ALGORITHMS, help="hyperopt's search algorithm (default tpe)")
    parser.add_argument("--startup-trials", type=positive_int, metavar="N",
                        help="tpe: the trials drawn at random before it models (default: a quarter of --max-evals, "
                             "3 to 20, and at least 2 per worker; recorded in sweep.json)")
    parser.add_argument("--seed", type=int, metavar="S",
                        help="seed of the suggestions (default: the settings' random_seed, else random; recorded)")
    add_hparam_argument(parser, help="fixed override for every trial (e.g. nbEpoch=5 for a quick sweep; +KEY=VALUE "
                                     "adds a new hparam); repeatable")
    parser.add_argument("--workers", type=positive_int, metavar="N",
                        help="train N trials at once on this machine (N workers in this process; no Spark needed); "
                        "with --parallelism P: N in each of the P worker processes; default 1")
    parser.add_argument("--join", metavar="NAME",
                        help="with -u: the sweep folder <workingFolder>/<session_name>_sweep_NAME, created by the first "
                        "process that names it and joined by the others (every task of a Slurm array: "
                        "--join $SLURM_ARRAY_JOB_ID); each process is a worker until --max-evals trials are done")
    parser.add_argument("--parallelism", type=positive_int, metavar="P",
                        help="P worker processes of the sweep started as Spark tasks (pyspark extra, Java 17+), as the "
                        "tasks of a Slurm array join one; default 1: no Spark")
    parser.add_argument("--spark-master", metavar="URL",
                        help="with --parallelism: a Spark master (spark://host:7077, ...); default local[P]")
    parser.add_argument("--scheduler", choices=SCHEDULERS,
                        help="stop bad trials early: 'asha' (asynchronous successive halving) trains each trial to a "
                        "first rung (--min-epochs), pauses it there, and continues only the top 1/eta of each rung, "
                        "from their checkpoints, to eta times the epochs, up to nbEpoch; 'hyperband' runs several "
                        "such ladders from different first rungs (default: the settings' sweep_scheduler, else none)")
    parser.add_argument("--eta", type=positive_int, metavar="ETA",
                        help="with --scheduler: the top 1/ETA of a rung continue, to ETA times the epochs (default: "
                        "the settings' sweep_eta, else 3)")
    parser.add_argument("--min-epochs", type=positive_int, metavar="N",
                        help="with --scheduler: the first rung, in epochs (default: the settings' sweep_min_epochs, "
                        "else 1)")
    parser.add_argument("--max-epochs", type=positive_int, metavar="N",
                        help="with --scheduler: the last rung (default nbEpoch); with --resume, raise it: the best "
                        "trials that finished continue to it from their checkpoints")
    parser.add_argument("--accept-code-change", action="store_true",
                        help="with --resume: train the next trials although the settings, the model file or a module "
                        "of yours they import changed since the sweep's trials ran (refused otherwise)")
    add_trust_code_argument(parser, "the sweep's (--resume, --join)")
    parser.add_argument(
        "--mlflow", nargs="?", const="", default=None, metavar="URI",
        help="log the sweep to this MLflow tracking server (without URI: MLFLOW_TRACKING_URI): one run of the sweep, "
        "a child run per trial (also trials of workers on other nodes), the sweep's best a metric of its run")
    add_requeue_file_argument(parser, what="the sweep folder", then="the sweep resumes")
    return parser


def run(arguments: argparse.Namespace, argv: list[str]) -> int:
    """Runs (or resumes, or joins) the sweep; returns the exit code."""
    if arguments.join is not None and arguments.resume:
        from experiments_manager.utils.errors import UserInputError

        raise UserInputError("--join: with -u SETTINGS (--resume names the sweep folder itself)")
    from experiments_manager.settings.overrides import parse_hparam_overrides
    from experiments_manager.sweeps.request import SweepRequest

    request = SweepRequest(usersettings=arguments.usersettings, resume=arguments.resume,
                           max_evals=arguments.max_evals, hparams=parse_hparam_overrides(arguments.hparam),
                           algo=arguments.algo, startup_trials=arguments.startup_trials, seed=arguments.seed,
                           parallelism=arguments.parallelism,
                           spark_master=arguments.spark_master, requeue_file=arguments.requeue_file,
                           accept_code_change=arguments.accept_code_change, trust_code=arguments.trust_code,
                           workers=arguments.workers,
                           join=arguments.join, scheduler=arguments.scheduler, eta=arguments.eta,
                           min_epochs=arguments.min_epochs, max_epochs=arguments.max_epochs,
                           mlflow=arguments.mlflow)
    request.check_combinations()  # said at once, before TensorFlow is imported (run_sweep checks them too)
    _check_where_it_starts(request)
    from experiments_manager.distribute.local_workers import stop_with_launcher

    stop_with_launcher(grace_seconds=None)  # a worker a Spark task started (`sweeps/spark.py`) goes when the task does
    request.tracking_uri()
    from experiments_manager.utils.native_noise import import_tensorflow_quietly

    import_tensorflow_quietly()
    from experiments_manager.sweeps.driver import run_sweep

    return run_sweep(request).exit_code


def _check_where_it_starts(request: SweepRequest) -> None:
    """The sweep folder to resume, or the settings file of a new sweep, checked before TensorFlow is imported: a
    mistyped name is said at once. (A requeued job's settings file may be gone: its sweep resumes from its copy.)

    Args:
        request: the command's `SweepRequest`.
    """
    from experiments_manager.settings.script import existing_settings_file
    from experiments_manager.sweeps.folder import SweepFolder

    if request.resume:
        SweepFolder.open(request.resume)
    elif request.usersettings and not request.requeue_file:
        existing_settings_file(request.usersettings)
