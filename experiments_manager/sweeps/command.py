"""What `experiments-manager sweep` and `em.sweep` run: a hyperopt search where every trial is an experiment.

The command line's parser is `experiments_manager.commands.sweep`; both build a `SweepRequest`.
"""

import contextlib
import dataclasses
import logging
import os
import random
from pathlib import Path

from experiments_manager.attempts import ACCEPT_CODE_CHANGE_FLAG
from experiments_manager.utils.errors import UserInputError
from experiments_manager.utils.lease import Lease
from experiments_manager.utils.signals import process_alive

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class SweepRequest:
    """What to sweep: the command line's options (`--hparam` parsed into `hparams`), or `em.sweep`'s arguments.

    Args:
        usersettings: the settings file with a `hyperopt_space` (a new sweep), or None.
        resume: the sweep folder to continue, or None.
        max_evals: the number of trials (required for a new sweep; with resume: more trials).
        hparams: fixed hparam overrides for every trial (dict; default none).
        algo: hyperopt's 'tpe' (default), 'rand' or 'anneal'.
        seed: the sweep's seed (default: the settings' `random_seed`, else drawn).
        parallelism: trials at once (default 1).
        spark_master: Spark master URL for parallel trials (default: local).
        requeue_file: `--requeue-file` (default None).
        accept_code_change: with resume, train on although the code changed since the trials ran (default False).
    """

    usersettings: str = None
    resume: str = None
    max_evals: int = None
    hparams: dict = dataclasses.field(default_factory=dict)
    algo: str = None
    seed: int = None
    parallelism: int = None
    spark_master: str = None
    requeue_file: str = None
    accept_code_change: bool = False


class SweepOutcome:
    """What a sweep ended with.

    Attributes:
        folder: the `SweepFolder`.
        exit_code: 0 when finished, 1 when every trial failed, 128 + signal (or 75) when interrupted.
    """

    def __init__(self, folder, exit_code):
        self.folder = folder
        self.exit_code = exit_code

    @property
    def status(self):
        return self.folder.spec().get("status")

    @property
    def best(self):
        """The best trial's row (hparams, best value, experiment folder), or None."""
        return self.folder.spec().get("best")

    def __repr__(self):
        spec = self.folder.spec()
        best = spec.get("best") or {}
        text = f"<SweepOutcome {spec.get('status')}: {spec.get('trials_done', 0)} trials in {self.folder.root}"
        if best:
            text += (f"; best {spec.get('monitored_loss_name')} {best.get('best_value'):.4g} "
                     f"(trial {best.get('trial')}: {best.get('experiment')})")
        return text + ">"


def run_sweep(arguments):
    """Runs (or resumes) a sweep described by a `SweepRequest` (`--requeue-file` may turn it into a resume);
    returns its `SweepOutcome`. The sweep folder has one writer: its lease (`utils/lease.py`) is held throughout."""
    with contextlib.ExitStack() as held:
        return _run_sweep(arguments, held)


def _run_sweep(arguments, held):
    from experiments_manager.experiment import running_command
    from experiments_manager.requeue_file import resume_remembered
    from experiments_manager.settings import load_settings
    from experiments_manager.sweeps.code_check import accepted_code, sweep_code_changes
    from experiments_manager.sweeps.folder import SweepFolder
    from experiments_manager.sweeps.objective import TrialObjective
    from experiments_manager.sweeps.runner import SweepRunner
    from experiments_manager.sweeps.space import SearchSpace
    from experiments_manager.sweeps.trials import SeededSuggestions, add_saved_trials

    # a requeued job repeats its first command line: its choices are already in sweep.json
    requeue = resume_remembered(arguments, recorded={"algo": None, "seed": None, "hparams": {}})
    if arguments.resume:
        sweep_folder = SweepFolder.open(arguments.resume)
        held.enter_context(Lease.acquire(sweep_folder.root, running_command(), what="sweep"))
        spec = _resumed_spec(sweep_folder.spec(), arguments)
        changes = sweep_code_changes(sweep_folder.root, spec)
        if changes and not arguments.accept_code_change:
            raise UserInputError(f"{arguments.resume}: the code changed since the sweep's trials ran: "
                                 f"{', '.join(changes)}; put it back, or resume with {ACCEPT_CODE_CHANGE_FLAG} "
                                 f"(new trials then train with it; the original settings are {sweep_folder.settings_copy})")
        if changes:
            _LOG.warning("Resuming the sweep with changed code (accepted): %s", ", ".join(changes))
            spec["code"] = accepted_code(sweep_folder.root, spec)
        model_file = spec.get("model_file") if Path(spec.get("model_file") or "").is_file() else None
        settings = load_settings(spec["settings_file"], spec["fixed_hparams"], model_file=model_file)
        space = SearchSpace.from_settings(settings)
    else:
        if arguments.max_evals is None:
            raise UserInputError("--max-evals: required for a new sweep (the number of trials)")
        fixed = dict(arguments.hparams)
        settings = load_settings(arguments.usersettings, fixed)
        space = SearchSpace.from_settings(settings)
        spec = _new_spec(settings, space, fixed, arguments)
    _check_fixed_hparams(spec["fixed_hparams"], space, settings.path.name)
    algo = SeededSuggestions(spec["algo"], spec["seed"])
    trials = _trials(spec["parallelism"], spec["spark_master"])
    try:
        if arguments.resume:
            add_saved_trials(trials, sweep_folder.trials_file, sweep_folder.trials_dir)
            sweep_folder.update_spec(**spec)
        else:
            sweep_folder = SweepFolder.create(settings, spec)
            held.enter_context(Lease.acquire(sweep_folder.root, running_command(), what="sweep"))
            if requeue is not None:
                requeue.remember(sweep_folder.root)
        _LOG.info("Sweep folder: %s (%d trials, %s, seed %d%s)", sweep_folder.root, spec["max_evals"], spec["algo"],
                  spec["seed"], f", {spec['parallelism']} at once" if spec["parallelism"] > 1 else "")
        objective = TrialObjective(sweep_folder.root, spec["settings_file"], spec["working_dir"],
                                   spec["fixed_hparams"], space)
        runner = SweepRunner(sweep_folder, space, objective, trials, algo, spec["max_evals"],
                             settings.training.monitor, settings.experiment.working_folder, spec["parallelism"])
        return SweepOutcome(sweep_folder, runner.run())
    finally:
        if spec["parallelism"] > 1:
            from experiments_manager.sweeps.spark import stop_spark

            stop_spark(trials)


def _new_spec(settings, space, fixed, arguments):
    seed = arguments.seed
    if seed is None:
        seed = settings.runtime.random_seed if settings.runtime.random_seed is not None else random.SystemRandom().randrange(2**31)
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
        "monitored_loss_name": settings.training.monitor,
    }


def _resumed_spec(spec, arguments):
    """sweep.json's choices, with the few a resume may change (more trials, other parallelism)."""
    fixed_flags = [flag for flag, value in (("--algo", arguments.algo), ("--seed", arguments.seed),
                                            ("--hparam", arguments.hparams)) if value]
    if fixed_flags:
        raise UserInputError(f"{', '.join(fixed_flags)}: not accepted with --resume (the sweep keeps its own)")
    if spec.get("status") == "running" and spec.get("pid") != os.getpid() and process_alive(spec.get("pid")):
        # a sweep of an older engine, which took no lease (this host's pids only)
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
        from experiments_manager.sweeps.spark import spark_trials

        return spark_trials(parallelism, spark_master)
    if spark_master:
        raise UserInputError("--spark-master: only with --parallelism P > 1")
    from experiments_manager.sweeps.trials import SweepTrials

    return SweepTrials()
