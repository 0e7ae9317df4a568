"""What `experiments-manager sweep` and `em.sweep` run: a hyperopt search where every trial is an experiment.

The command line's parser is `experiments_manager.commands.sweep`; both build a `SweepRequest`.
"""

import logging
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

from experiments_manager.run.record import Status
from experiments_manager.sweeps.legacy import COORDINATION
from experiments_manager.sweeps.request import SweepRequest
from experiments_manager.sweeps.resume_plan import (SweepFacts, check_fixed_hparams, code_decision, join_name,
                                                    joined_spec, resumed_spec)
from experiments_manager.sweeps.sampler import MAX_STARTUP_TRIALS
from experiments_manager.sweeps.spark import SPARK_TASK_VARIABLE
from experiments_manager.sweeps.scheduler import RungSchedule, schedule_of
from experiments_manager.utils.errors import EXIT_TEMPFAIL, UserInputError
from experiments_manager.utils.lease import LeaseHeld
from experiments_manager.utils.signals import process_alive

if TYPE_CHECKING:
    from experiments_manager.settings.loader import Settings
    from experiments_manager.settings.script import ScriptSource
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
    from experiments_manager.settings.script import ScriptSource
    from experiments_manager.sweeps.folder import SweepFolder
    from experiments_manager.sweeps.space import SearchSpace

    # a requeued job repeats its first command line: its choices are already in sweep.json
    arguments, requeue = resume_remembered(arguments, recorded={"algo": None, "seed": None, "hparams": {}})
    arguments.check_combinations()
    if arguments.resume:
        sweep_folder = SweepFolder.open(arguments.resume)
        on_disk = sweep_folder.spec()
        sweep_folder.refuse_foreign_code(on_disk, arguments.trust_code)  # before any of its code runs
        spec = resumed_spec(on_disk, arguments, _facts(on_disk))
        spec = _code_checked(sweep_folder, spec, arguments.accept_code_change, arguments.resume)
        # its copy, run as the user's file (no path of sweep.json runs), or the settings this resume accepted
        source = sweep_folder.settings_source(spec, accepted_now=arguments.accept_code_change)
        model_file = spec.get("model_file") if Path(spec.get("model_file") or "").is_file() else None
        settings = load_settings(source.runs, spec["fixed_hparams"], model_file=model_file, script=source.script)
        space = SearchSpace.from_settings(settings)
        check_fixed_hparams(spec["fixed_hparams"], space.names, settings.path.name)
        created = False
    else:
        fixed = dict(arguments.hparams)
        settings = load_settings(cast(str, arguments.usersettings), fixed)  # (-u or --resume: one is required)
        space = SearchSpace.from_settings(settings)
        check_fixed_hparams(fixed, space.names, settings.path.name)
        if arguments.max_evals is None and not SweepFolder.named(settings, join_name(arguments.join)).exists():
            raise UserInputError(f"--max-evals: required to start the sweep {arguments.join} (the number of trials; "
                                 "a process that joins an existing sweep may leave it out)")
        spec = _new_spec(settings, space, fixed, arguments)
        named = Path(spec["settings_file"])  # the file this command names (resolved)
        source = ScriptSource(runs=named, script=named)
        sweep_folder, created = SweepFolder.create(settings, spec, name=join_name(arguments.join))
        if not created:  # another task of the array created it first
            on_disk = sweep_folder.spec()
            sweep_folder.refuse_foreign_code(on_disk, arguments.trust_code)  # its trials will resume
            spec = joined_spec(on_disk, spec, arguments, str(sweep_folder.root))
            spec = _code_checked(sweep_folder, spec, arguments.accept_code_change, str(sweep_folder.root))
        if requeue is not None:
            requeue.remember(sweep_folder.root)
    _LOG.info("Sweep folder: %s (%s; %d trials, %s, seed %d%s)", sweep_folder.root, "new" if created else "joined",
              spec["max_evals"], _algorithm_words(spec), spec["seed"],
              f", {spec['parallelism']} at once on Spark" if spec["parallelism"] > 1 else
              f", {arguments.workers} workers here" if (arguments.workers or 1) > 1 else "")
    return _run_workers(sweep_folder, spec, settings, source, space, arguments.workers or 1, arguments.trust_code)


def _algorithm_words(spec: "SweepSpec") -> str:
    """'tpe (its first 4 trials at random)', 'rand': the first line's words for the search."""
    if spec["algo"] != "tpe":
        return spec["algo"]
    startup = spec.get("startup_trials")
    return (f"tpe (its first {startup} trials at random)" if startup is not None else
            f"tpe (its first {MAX_STARTUP_TRIALS} trials at random, hyperopt's default)")


def _facts(spec: "SweepSpec") -> SweepFacts:
    """What the machine says of the sweep a resume continues (`resume_plan.SweepFacts`)."""
    return SweepFacts(settings_file_exists=Path(spec.get("settings_file", "")).is_file(),
                      older_engine_running=(spec.get("coordination") != COORDINATION
                                            and spec.get("status") == Status.RUNNING
                                            and spec.get("pid") != os.getpid() and process_alive(spec.get("pid"))))


def _run_workers(sweep_folder: "SweepFolder", spec: "SweepSpec", settings: "Settings", source: "ScriptSource",
                 space: "SearchSpace", workers: int, trust_code: bool) -> SweepOutcome:
    """This process' workers of the sweep (`sweeps/worker_loops.py`), or with `parallelism` P > 1 the P worker
    processes Spark starts (`sweeps/spark.py`), each with `workers` loops; their new trials train from `source`;
    with `trust_code` (`--trust-code`) the trials they resume are trusted with the sweep, else each is checked."""
    from experiments_manager.sweeps.legacy import import_finished
    from experiments_manager.sweeps.store import SweepStore
    from experiments_manager.sweeps.sampler import SeededSuggestions
    from experiments_manager.sweeps.trials_pickle import check_saved_trials
    from experiments_manager.sweeps.worker_loops import SweepWorkers
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
        replaced = sweep_folder.take_accepted_settings(spec)  # recorded first: the copy is what sweep.json says
        if replaced:
            _LOG.info("Accepted settings kept for the next resumes: %s", replaced)
        sweep_folder.record.running()
    loops = SweepWorkers(store, source, spec["working_dir"], spec["fixed_hparams"],
                         settings.experiment.working_folder, workers, trust_code=trust_code)
    if spec["parallelism"] <= 1 or SPARK_TASK_VARIABLE in os.environ:
        return SweepOutcome(sweep_folder, loops.run())
    from experiments_manager.sweeps.spark import SparkJobFailed, run_workers_on_spark

    tasks = spec["parallelism"]
    try:
        codes, loops.stop_signum = run_workers_on_spark(sweep_folder.root.resolve(), tasks, spec.get("spark_master"),
                                                        workers, trust_code)
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
    """sweep.json's spec after comparing the sweep's code with the files now (`resume_plan.code_decision`)."""
    from experiments_manager.sweeps.code_check import accepted_code, sweep_code_changes

    changes = sweep_code_changes(sweep_folder.root, spec)
    spec = code_decision(spec, changes, accept, shown, sweep_folder.settings_copy,
                         lambda: accepted_code(sweep_folder.root, spec))
    if changes:  # (the settings' copy takes an accepted change once sweep.json records it: `_run_workers`)
        _LOG.warning("Resuming the sweep with changed code (accepted): %s", ", ".join(changes))
    return spec


def _new_spec(settings: "Settings", space: "SearchSpace", fixed: dict[str, Any],
              arguments: SweepRequest) -> "SweepSpec":
    from experiments_manager.sweeps.sampler import startup_trials

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
        "startup_trials": (arguments.startup_trials or startup_trials(arguments.max_evals or 0, workers)
                           if (arguments.algo or "tpe") == "tpe" else None),
        "scheduler": schedule_of(settings, arguments.scheduler, arguments.eta, arguments.min_epochs,
                                 arguments.max_epochs),
        "mlflow_tracking_uri": arguments.tracking_uri(),  # checked before the folder is made
    }
