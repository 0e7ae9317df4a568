"""What `experiments-manager sweep` and `em.sweep` run: a hyperopt search where every trial is an experiment.

The command line's parser is `experiments_manager.commands.sweep`; both build a `SweepRequest`.
"""

import logging
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

from experiments_manager.run.record import Status
from experiments_manager.run.attempts import ACCEPT_CODE_CHANGE_FLAG
from experiments_manager.sweeps.legacy import COORDINATION
from experiments_manager.sweeps.request import SweepRequest
from experiments_manager.sweeps.spark import SPARK_TASK_VARIABLE
from experiments_manager.sweeps.scheduler import RungSchedule, describe, raised_max_epochs, schedule_of
from experiments_manager.utils.errors import EXIT_TEMPFAIL, UserInputError
from experiments_manager.utils.lease import LeaseHeld
from experiments_manager.utils.signals import process_alive

if TYPE_CHECKING:
    from experiments_manager.settings.loader import Settings
    from experiments_manager.sweeps.folder import SweepFolder
    from experiments_manager.sweeps.spec_writer import SweepSpec
    from experiments_manager.sweeps.space import SearchSpace

_LOG = logging.getLogger(__name__)


class SweepOutcome:
    """What a sweep ended with.

    Attributes:
        folder: the `SweepFolder`.
        exit_code: 0 when finished, 1 when every trial failed, 128 + signal (or 75) when interrupted.
    """

    def __init__(self, folder: "SweepFolder", exit_code: int) -> None:
        self.folder = folder
        self.exit_code = exit_code

    @property
    def status(self) -> Optional[str]:
        return self.folder.spec().get("status")

    @property
    def best(self) -> Optional[dict[str, Any]]:
        """The best trial's row (hparams, best value, experiment folder), or None."""
        return self.folder.spec().get("best")

    def __repr__(self) -> str:
        spec = self.folder.spec()
        best = spec.get("best") or {}
        text = f"<SweepOutcome {spec.get('status')}: {spec.get('trials_done', 0)} trials in {self.folder.root}"
        if best:
            text += (f"; best {spec.get('monitored_loss_name')} {best.get('best_value'):.4g} "
                     f"(trial {best.get('trial')}: {best.get('experiment')})")
        return text + ">"


def run_sweep(arguments: SweepRequest) -> SweepOutcome:
    """Runs (or resumes, or joins) a sweep described by a `SweepRequest` (`--requeue-file` may turn it into a
    resume); returns its `SweepOutcome`. One engine: workers that coordinate through the sweep folder
    (`sweeps/store.py`), started here (`--workers N`), by the tasks of a Slurm array (`--join`), or by Spark
    (`--parallelism P`: `sweeps/spark.py` starts P worker processes)."""
    from experiments_manager.run.requeue_file import resume_remembered
    from experiments_manager.settings import load_settings
    from experiments_manager.sweeps.folder import SweepFolder
    from experiments_manager.sweeps.space import SearchSpace

    # a requeued job repeats its first command line: its choices are already in sweep.json
    arguments, requeue = resume_remembered(arguments, recorded={"algo": None, "seed": None, "hparams": {}})
    arguments.check_combinations()
    if arguments.resume:
        sweep_folder = SweepFolder.open(arguments.resume)
        spec = _resumed_spec(sweep_folder.spec(), arguments)
        spec = _code_checked(sweep_folder, spec, arguments.accept_code_change, arguments.resume)
        model_file = spec.get("model_file") if Path(spec.get("model_file") or "").is_file() else None
        settings = load_settings(spec["settings_file"], spec["fixed_hparams"], model_file=model_file)
        space = SearchSpace.from_settings(settings)
        _check_fixed_hparams(spec["fixed_hparams"], space, settings.path.name)
        created = False
    else:
        if arguments.max_evals is None and arguments.join is None:
            raise UserInputError("--max-evals: required for a new sweep (the number of trials)")
        fixed = dict(arguments.hparams)
        settings = load_settings(cast(str, arguments.usersettings), fixed)  # (-u or --resume: one is required)
        space = SearchSpace.from_settings(settings)
        _check_fixed_hparams(fixed, space, settings.path.name)
        if arguments.max_evals is None and not SweepFolder.named(settings, _join_name(arguments.join)).exists():
            raise UserInputError(f"--max-evals: required to start the sweep {arguments.join} (the number of trials; "
                                 "a process that joins an existing sweep may leave it out)")
        spec = _new_spec(settings, space, fixed, arguments)
        sweep_folder, created = SweepFolder.create(settings, spec, name=_join_name(arguments.join))
        if not created:  # another task of the array created it first
            spec = _joined_spec(sweep_folder, spec, arguments)
            spec = _code_checked(sweep_folder, spec, arguments.accept_code_change, str(sweep_folder.root))
        if requeue is not None:
            requeue.remember(sweep_folder.root)
    _LOG.info("Sweep folder: %s (%s; %d trials, %s, seed %d%s)", sweep_folder.root, "new" if created else "joined",
              spec["max_evals"],
              spec["algo"], spec["seed"],
              f", {spec['parallelism']} at once on Spark" if spec["parallelism"] > 1 else
              f", {arguments.workers} workers here" if (arguments.workers or 1) > 1 else "")
    return _run_workers(sweep_folder, spec, settings, space, arguments.workers or 1)


def _run_workers(sweep_folder: "SweepFolder", spec: "SweepSpec", settings: "Settings", space: "SearchSpace",
                 workers: int) -> SweepOutcome:
    """This process' workers of the sweep (`sweeps/worker.py`), or with `parallelism` P > 1 the P worker
    processes Spark starts (`sweeps/spark.py`), each with `workers` loops."""
    from experiments_manager.sweeps.legacy import import_finished
    from experiments_manager.sweeps.store import SweepStore
    from experiments_manager.sweeps.trials import SeededSuggestions, check_saved_trials
    from experiments_manager.sweeps.worker import SweepWorkers
    from experiments_manager.utils.lease import LEASE_NAME
    from experiments_manager.utils.lease_holder import live_holder

    holder = live_holder(sweep_folder.root / LEASE_NAME)
    if holder is not None:
        raise LeaseHeld(f"{sweep_folder.root}: an older engine's sweep (its Spark driver) writes this sweep: "
                        f"{holder.describe()}; wait for it to end (or stop it) and try again")
    algo = SeededSuggestions(spec["algo"], spec["seed"], startup_trials=spec.get("startup_trials"))
    store = SweepStore(sweep_folder, space, algo, spec["max_evals"], settings.training.monitor,
                       schedule=RungSchedule.from_json(spec.get("scheduler")))
    if spec.get("coordination") != COORDINATION:  # an older engine's or a Spark sweep: its finished trials
        import_finished(sweep_folder, store.journal, store.locked)
    else:
        check_saved_trials(sweep_folder.trials_file, sweep_folder.trials_dir)
    with store.locked():  # what this process may change (the total, accepted code), and that it works on it
        before = RungSchedule.from_json(sweep_folder.spec().get("scheduler"))
        if before is not None and store.schedule is not None and store.schedule.max_epochs > before.max_epochs:
            store.reopen_finished(before.max_epochs)  # a resume's --max-epochs: they may continue
        chosen: SweepSpec = {"max_evals": spec["max_evals"], "code": spec.get("code"),
                             "startup_trials": algo.startup_trials, "scheduler": spec.get("scheduler"),
                             "mlflow_tracking_uri": spec.get("mlflow_tracking_uri")}
        if SPARK_TASK_VARIABLE not in os.environ:  # how its workers are started (a worker Spark started leaves it)
            chosen.update({"parallelism": spec["parallelism"], "spark_master": spec.get("spark_master")})
        sweep_folder.record.chosen(chosen)
        sweep_folder.record.running()
    loops = SweepWorkers(store, spec["settings_file"], spec["working_dir"], spec["fixed_hparams"],
                         settings.experiment.working_folder, workers)
    if spec["parallelism"] <= 1 or SPARK_TASK_VARIABLE in os.environ:
        return SweepOutcome(sweep_folder, loops.run())
    from experiments_manager.sweeps.spark import SparkJobFailed, run_workers_on_spark

    tasks = spec["parallelism"]
    try:
        codes, loops.stop_signum = run_workers_on_spark(sweep_folder.root.resolve(), tasks, spec.get("spark_master"),
                                                        workers)
    except SparkJobFailed as failure:  # (executors lost, or a task that could not start its worker): resumable
        _LOG.error("%s", failure)
        return SweepOutcome(sweep_folder, loops.finish(f"{tasks} Spark tasks: the job failed", tempfail=True))
    exit_code = loops.finish(f"{tasks} Spark tasks, one worker process each" + (
        f" (exit codes {', '.join(map(str, codes))})" if any(codes) else ""), tempfail=EXIT_TEMPFAIL in codes)
    failed = [code for code in codes if 0 < code < 128 and code != EXIT_TEMPFAIL]  # a worker that could not run
    if loops.stop_signum is None and failed and exit_code == EXIT_TEMPFAIL:  # (no package, no settings file there):
        return SweepOutcome(sweep_folder, failed[0])  # its code, not "try again later"
    return SweepOutcome(sweep_folder, exit_code)


def _code_checked(sweep_folder: "SweepFolder", spec: "SweepSpec", accept: bool, shown: str) -> "SweepSpec":
    """sweep.json's spec after comparing the sweep's code with the files now: a change refused in one line
    unless accepted (then recorded)."""
    from experiments_manager.sweeps.code_check import accepted_code, sweep_code_changes

    changes = sweep_code_changes(sweep_folder.root, spec)
    if changes and not accept:
        raise UserInputError(f"{shown}: the code changed since the sweep's trials ran: "
                             f"{', '.join(changes)}; put it back, or resume with {ACCEPT_CODE_CHANGE_FLAG} "
                             f"(new trials then train with it; the original settings are {sweep_folder.settings_copy})")
    if changes:
        _LOG.warning("Resuming the sweep with changed code (accepted): %s", ", ".join(changes))
        spec = {**spec, "code": accepted_code(sweep_folder.root, spec)}
    return spec


def _join_name(name: Optional[str]) -> Optional[str]:
    if name is None:
        return None
    if not name or "/" in name or name.startswith(".") or len(name) > 100:
        raise UserInputError(f"--join: expected a plain name (letters, digits, - and _, e.g. the array's job id), "
                             f"got {name!r}")
    return name


def _joined_spec(sweep_folder: "SweepFolder", mine: "SweepSpec", arguments: SweepRequest) -> "SweepSpec":
    """The spec of the sweep this process joins (`--join`): the options it gives must agree with the sweep's;
    those it leaves out (`--hparam`, `--algo`, `--seed`, `--max-evals`) are the sweep's; a larger `--max-evals`
    raises the total."""
    spec = sweep_folder.spec()
    problems: list[str] = []
    if Path(spec.get("settings_file", "")).resolve() != Path(mine["settings_file"]).resolve():
        problems.append(f"-u: the sweep trains {spec.get('settings_file')}, this process names {mine['settings_file']}")
    if arguments.hparams and spec.get("fixed_hparams") != mine["fixed_hparams"]:
        problems.append(f"--hparam: the sweep fixes {_hparams_text(spec.get('fixed_hparams'))}, this process "
                        f"{_hparams_text(mine['fixed_hparams'])}")
    for flag, key, value in (("--algo", "algo", arguments.algo), ("--seed", "seed", arguments.seed)):
        if value is not None and value != spec.get(key):
            problems.append(f"{flag}: the sweep has {spec.get(key)}, this process {value}")
    if (arguments.scheduler is not None or arguments.eta is not None or arguments.min_epochs is not None
            or arguments.max_epochs is not None) and mine.get("scheduler") != spec.get("scheduler"):
        problems.append(f"--scheduler: the sweep has {describe(spec.get('scheduler'))}, this process "
                        f"{describe(mine.get('scheduler'))}")
    if arguments.mlflow is not None and mine.get("mlflow_tracking_uri") != spec.get("mlflow_tracking_uri"):
        problems.append(f"--mlflow: the sweep logs to {spec.get('mlflow_tracking_uri')}, this process to "
                        f"{mine.get('mlflow_tracking_uri')}")
    if problems:
        raise UserInputError([f"--join {arguments.join}: {sweep_folder.root}: {problem} (leave the option out to "
                              "take the sweep's)" for problem in problems])
    return {**spec, "max_evals": max(spec["max_evals"], arguments.max_evals or 0),
            "parallelism": arguments.parallelism or 1, "spark_master": arguments.spark_master}  # how this one starts


def _hparams_text(hparams: Optional[dict[str, Any]]) -> str:
    return " ".join(f"{name}={value!r}" for name, value in (hparams or {}).items()) or "none"


def _new_spec(settings: "Settings", space: "SearchSpace", fixed: dict[str, Any],
              arguments: SweepRequest) -> "SweepSpec":
    from experiments_manager.sweeps.store import startup_trials

    # the workers a sweep plans: this process' (times its Spark tasks), times the tasks of its Slurm array when they
    # join it
    workers = (arguments.workers or 1) * (arguments.parallelism or 1) * (
        int(os.environ.get("SLURM_ARRAY_TASK_COUNT") or 1) if arguments.join else 1)
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
        "max_evals": cast(int, arguments.max_evals),  # None only when joining: the sweep's then (`_joined_spec`)
        "parallelism": arguments.parallelism or 1,
        "spark_master": arguments.spark_master,
        "monitored_loss_name": settings.training.monitor,
        "workers": workers,
        "startup_trials": startup_trials(workers) if (arguments.algo or "tpe") == "tpe" else None,
        "scheduler": schedule_of(settings, arguments.scheduler, arguments.eta, arguments.min_epochs,
                                 arguments.max_epochs),
        "mlflow_tracking_uri": arguments.tracking_uri(),  # checked before the folder is made
    }


def _resumed_spec(spec: "SweepSpec", arguments: SweepRequest) -> "SweepSpec":
    """sweep.json's choices, with the few a resume may change (more trials, other parallelism)."""
    fixed_flags = [flag for flag, value in (("--algo", arguments.algo), ("--seed", arguments.seed),
                                            ("--hparam", arguments.hparams), ("--scheduler", arguments.scheduler),
                                            ("--eta", arguments.eta), ("--min-epochs", arguments.min_epochs)) if value]
    if fixed_flags:
        raise UserInputError(f"{', '.join(fixed_flags)}: not accepted with --resume (the sweep keeps its own)")
    if (spec.get("coordination") != COORDINATION and spec.get("status") == Status.RUNNING
            and spec.get("pid") != os.getpid() and process_alive(spec.get("pid"))):
        # a sweep of an older engine, which took no lease (this host's pids only)
        raise UserInputError(f"{arguments.resume}: the sweep is still running (pid {spec['pid']}); stop it first")
    if not Path(spec.get("settings_file", "")).is_file():
        raise UserInputError(f"{arguments.resume}: sweep.json: settings_file: {spec.get('settings_file')!r} "
                             "not found (the sweep trains from it)")
    if arguments.max_evals is not None and arguments.max_evals < spec.get("trials_done", 0):
        raise UserInputError(f"--max-evals: expected at least the {spec['trials_done']} trials already done, "
                             f"got {arguments.max_evals}")
    return {**spec,
            "scheduler": raised_max_epochs(spec.get("scheduler"), arguments.max_epochs),
            "max_evals": arguments.max_evals or spec["max_evals"],
            "parallelism": arguments.parallelism or (1 if arguments.workers else spec.get("parallelism", 1)),
            "spark_master": arguments.spark_master or spec.get("spark_master"),
            "mlflow_tracking_uri": arguments.tracking_uri() or spec.get("mlflow_tracking_uri")}


def _check_fixed_hparams(fixed: dict[str, Any], space: "SearchSpace", file_name: str) -> None:
    from experiments_manager.settings.overrides import split_new_hparams

    swept = sorted(set(split_new_hparams(fixed)[0]) & set(space.names))
    if swept:
        raise UserInputError(f"--hparam {', '.join(swept)}: also in {file_name}'s hyperopt_space "
                             "(a swept hparam cannot be fixed; drop one)")
