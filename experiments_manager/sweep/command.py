"""`experiments-manager sweep`: a hyperopt search where every trial is an experiment."""

import logging
import random
from pathlib import Path

from experiments_manager.errors import UserInputError
from experiments_manager.requeue_file import add_requeue_file_argument
from experiments_manager.sweep import ALGORITHMS
from experiments_manager.sweep.journal import process_alive

_LOG = logging.getLogger(__name__)


def add_sweep_parser(commands, positive_int):
    """Adds `sweep` to the CLI's sub-commands."""
    sweep = commands.add_parser(
        "sweep",
        help="search hparams with hyperopt: every trial is an experiment",
        description="Search the settings' hyperopt_space with hyperopt. Every trial trains a normal experiment "
        "in its own process and is scored by its best monitored value. The sweep folder "
        "(<workingFolder>/<session_name>_sweep_<time>/) keeps the Trials, results.csv and a plot of the loss "
        "against each hparam; --resume continues a stopped sweep without training finished trials again.",
    )
    source = sweep.add_mutually_exclusive_group(required=True)
    source.add_argument("-u", "--usersettings", metavar="SETTINGS", help="the settings module (.py) with hyperopt_space")
    source.add_argument("--resume", metavar="SWEEP_DIR", help="continue this sweep")
    sweep.add_argument("--max-evals", type=positive_int, metavar="N",
                       help="trials in all (required for a new sweep; with --resume: raise the total)")
    sweep.add_argument("--algo", choices=ALGORITHMS, help="hyperopt's search algorithm (default tpe)")
    sweep.add_argument("--seed", type=int, metavar="S",
                       help="seed of the suggestions (default: the settings' random_seed, else random; recorded)")
    sweep.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE",
                       help="fixed override for every trial (e.g. nbEpoch=5 for a quick sweep); repeatable")
    sweep.add_argument("--parallelism", type=positive_int, metavar="P",
                       help="trials at once through Spark (pyspark extra, Java 17+); default 1: one after another")
    sweep.add_argument("--spark-master", metavar="URL",
                       help="with --parallelism: a Spark master (spark://host:7077, ...); default local[P]")
    add_requeue_file_argument(sweep, what="the sweep folder", then="the sweep resumes")


def sweep(arguments):
    """Runs `experiments-manager sweep`; returns the exit code."""
    from experiments_manager.requeue_file import resume_remembered
    from experiments_manager.settings import load_settings, parse_hparam_overrides
    from experiments_manager.sweep.folder import SweepFolder, file_sha256
    from experiments_manager.sweep.objective import TrialObjective
    from experiments_manager.sweep.runner import SweepRunner
    from experiments_manager.sweep.space import SearchSpace
    from experiments_manager.sweep.trials import SeededSuggestions, add_saved_trials

    # a requeued job repeats its first command line: its choices are already in sweep.json
    requeue = resume_remembered(arguments, recorded={"algo": None, "seed": None, "hparam": []})
    if arguments.resume:
        sweep_folder = SweepFolder.open(arguments.resume)
        spec = _resumed_spec(sweep_folder.spec(), arguments)
        if file_sha256(spec["settings_file"]) != spec.get("settings_sha256"):
            _LOG.warning("%s changed since the sweep started: new trials use it as it is now (the original is %s)",
                         spec["settings_file"], sweep_folder.settings_copy)
        model_file = spec.get("model_file") if Path(spec.get("model_file") or "").is_file() else None
        settings = load_settings(spec["settings_file"], spec["fixed_hparams"], model_file=model_file)
        space = SearchSpace.from_settings(settings)
    else:
        if arguments.max_evals is None:
            raise UserInputError("--max-evals: required for a new sweep (the number of trials)")
        fixed = parse_hparam_overrides(arguments.hparam)
        settings = load_settings(arguments.usersettings, fixed)
        space = SearchSpace.from_settings(settings)
        spec = _new_spec(settings, space, fixed, arguments)
    _check_fixed_hparams(spec["fixed_hparams"], space, settings.path.name)
    algo = SeededSuggestions(spec["algo"], spec["seed"])
    trials = _trials(spec["parallelism"], spec["spark_master"])
    try:
        if arguments.resume:
            add_saved_trials(trials, sweep_folder.trials_file)
            sweep_folder.update_spec(**spec)
        else:
            sweep_folder = SweepFolder.create(settings, spec)
            if requeue is not None:
                requeue.remember(sweep_folder.root)
        _LOG.info("Sweep folder: %s (%d trials, %s, seed %d%s)", sweep_folder.root, spec["max_evals"], spec["algo"],
                  spec["seed"], f", {spec['parallelism']} at once" if spec["parallelism"] > 1 else "")
        objective = TrialObjective(sweep_folder.root, spec["settings_file"], spec["working_dir"],
                                   spec["fixed_hparams"], space)
        runner = SweepRunner(sweep_folder, space, objective, trials, algo, spec["max_evals"],
                             settings.monitored_loss_name, settings.workingFolder, spec["parallelism"])
        return runner.run()
    finally:
        if spec["parallelism"] > 1:
            from experiments_manager.sweep.spark import stop_spark

            stop_spark(trials)


def _new_spec(settings, space, fixed, arguments):
    seed = arguments.seed
    if seed is None:
        seed = settings.random_seed if settings.random_seed is not None else random.SystemRandom().randrange(2**31)
    return {
        "settings_file": str(settings.path.resolve()),
        "model_file": str(settings.model_file.resolve()),
        "working_dir": str(Path.cwd()),
        "fixed_hparams": fixed,
        "space": space.describe(),
        "algo": arguments.algo or "tpe",
        "seed": seed,
        "max_evals": arguments.max_evals,
        "parallelism": arguments.parallelism or 1,
        "spark_master": arguments.spark_master,
        "monitored_loss_name": settings.monitored_loss_name,
    }


def _resumed_spec(spec, arguments):
    """sweep.json's choices, with the few a resume may change (more trials, other parallelism)."""
    fixed_flags = [flag for flag, value in (("--algo", arguments.algo), ("--seed", arguments.seed),
                                            ("--hparam", arguments.hparam)) if value]
    if fixed_flags:
        raise UserInputError(f"{', '.join(fixed_flags)}: not accepted with --resume (the sweep keeps its own)")
    if spec.get("status") == "running" and process_alive(spec.get("pid")):
        raise UserInputError(f"{arguments.resume}: the sweep is still running (pid {spec['pid']}); stop it first")
    if not Path(spec.get("settings_file", "")).is_file():
        raise UserInputError(f"{arguments.resume}: sweep.json: settings_file: {spec.get('settings_file')!r} "
                             "not found (the sweep trains from it)")
    if arguments.max_evals is not None and arguments.max_evals < spec.get("trials_done", 0):
        raise UserInputError(f"--max-evals: expected at least the {spec['trials_done']} trials already done, "
                             f"got {arguments.max_evals}")
    return {**spec,
            "max_evals": arguments.max_evals or spec["max_evals"],
            "parallelism": arguments.parallelism or spec.get("parallelism", 1),
            "spark_master": arguments.spark_master or spec.get("spark_master")}


def _check_fixed_hparams(fixed, space, file_name):
    swept = sorted(set(fixed) & set(space.names))
    if swept:
        raise UserInputError(f"--hparam {', '.join(swept)}: also in {file_name}'s hyperopt_space "
                             "(a swept hparam cannot be fixed; drop one)")


def _trials(parallelism, spark_master):
    if parallelism > 1:
        from experiments_manager.sweep.spark import spark_trials

        return spark_trials(parallelism, spark_master)
    if spark_master:
        raise UserInputError("--spark-master: only with --parallelism P > 1")
    from experiments_manager.sweep.trials import SweepTrials

    return SweepTrials()
