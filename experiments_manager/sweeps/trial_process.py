"""The process of one sweep trial: trains (or resumes) one experiment and notes its folder in the trial's record.

The sweep starts `python -m experiments_manager.sweeps.trial_process ...` for
every trial, so TensorFlow state (graphs, GPU memory, seeds) never leaks from
one trial into the next. A trial whose parent (the sweep, or a Spark worker)
dies stops as if Slurm had signalled it: checkpoint, status interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from typing import TYPE_CHECKING, Any, ContextManager, Optional, Sequence

from experiments_manager.utils.environment_failures import environment_failure_line
from experiments_manager.utils.errors import EXIT_TEMPFAIL, EXIT_USER_ERROR, UserInputError, print_problems
from experiments_manager.utils.signals import stop_when_orphaned
from experiments_manager.sweeps.journal import TrialRecord

if TYPE_CHECKING:
    from pathlib import Path

    from experiments_manager.run.experiment import Experiment
    from experiments_manager.utils.atomic import PathLike

_LOG = logging.getLogger(__name__)
ORPHAN_CHECK_SECS = 0.5


def trial_command(record_path: PathLike, parent_pid: int, settings_path: Optional[PathLike] = None,
                  hparams: Optional[dict[str, Any]] = None, resume: Optional[str] = None,
                  epochs: Optional[int] = None) -> list[str]:
    """The argv that runs one trial: a new experiment from `settings_path` and `hparams`, or `resume`; trained to
    `epochs` in all (a scheduler's rung) instead of the settings' `nbEpoch` when given."""
    command = [sys.executable, "-m", "experiments_manager.sweeps.trial_process",
               "--record", str(record_path), "--parent-pid", str(parent_pid)]
    if epochs is not None:
        command += ["--epochs", str(epochs)]
    if resume is not None:
        return command + ["--resume", str(resume)]
    return command + ["--settings", str(settings_path), "--hparams-json", json.dumps(hparams)]


def equivalent_train_command(settings_path: PathLike, hparams: dict[str, Any]) -> list[str]:
    """The `experiments-manager train` line that reproduces a trial on its own (recorded in run.json)."""
    command = ["experiments-manager", "train", "-u", str(settings_path)]
    for name, value in hparams.items():
        command += ["--hparam", f"{name}={value!r}"]
    return command


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments_manager.sweeps.trial_process",
                                     description="Runs one trial of a sweep (started by `experiments-manager sweep`).")
    parser.add_argument("--record", required=True, help="the trial's record in <sweep>/trials/")
    parser.add_argument("--parent-pid", type=int, required=True, help="stop (checkpoint) when this process is gone")
    parser.add_argument("--settings", help="train a new experiment from this settings file")
    parser.add_argument("--hparams-json", default="{}", help="hparam overrides of the new experiment, as JSON")
    parser.add_argument("--resume", metavar="EXPERIMENT_DIR", help="continue this experiment instead")
    parser.add_argument("--epochs", type=int, metavar="N",
                        help="train to N epochs in all (a scheduler's rung) instead of the settings' nbEpoch")
    arguments = parser.parse_args(argv)

    from experiments_manager.utils.logging_setup import configure_logging
    from experiments_manager.utils.native_noise import import_tensorflow_quietly

    configure_logging()
    import_tensorflow_quietly()
    from experiments_manager import training

    _stop_when_orphaned(arguments.parent_pid)
    record = TrialRecord(arguments.record)

    sweep_root = record.path.parent.parent

    # `alongside` hook: called once the experiment folder exists
    def noted(experiment: Experiment) -> ContextManager[None]:
        return _noted(record, experiment, sweep_root=sweep_root)

    try:
        if arguments.resume:
            if _reached(arguments.resume, arguments.epochs):
                return 0
            # the sweep compared its code with what its trials ran before it resumed (sweeps/code_check.py)
            outcome = training.resume(arguments.resume, alongside=noted, accept_code_change=True,
                                      epochs=arguments.epochs)
        else:
            hparams = json.loads(arguments.hparams_json)
            settings = arguments.settings
            if arguments.epochs is not None:
                from experiments_manager.settings import load_settings

                settings = load_settings(arguments.settings, hparams)
                settings.train_for(arguments.epochs)
                hparams = None  # applied
            outcome = training.train(settings, hparams, alongside=noted, working_folder=sweep_root,
                                     mlflow=_sweep_tracking_uri(sweep_root),
                                     command=equivalent_train_command(arguments.settings,
                                                                      json.loads(arguments.hparams_json)))
    except UserInputError as error:
        print_problems(error.problems)
        record.update(reason="; ".join(error.problems))
        return getattr(error, "exit_code", EXIT_USER_ERROR)  # 75: another writer holds the experiment (retried)
    except OSError as error:  # the machine failed (a full disk, a quota, ...): the trial is tried again later
        line = environment_failure_line(error)
        if line is None:
            raise
        print_problems(line)
        return EXIT_TEMPFAIL
    return outcome.exit_code


def _reached(experiment_dir: str, epochs: Optional[int]) -> bool:
    """True when a scheduler's trial already trained its `epochs` (its process was stopped after its last
    checkpoint, before it recorded its end): its end is recorded now, nothing is trained again."""
    from experiments_manager.run.endings import finished
    from experiments_manager.run.experiment import Experiment, running_command
    from experiments_manager.run.lifecycle import attempt, record_ending
    from experiments_manager.run.record import Status

    if epochs is None:
        return False
    experiment = Experiment.open(experiment_dir)
    info = experiment.run_info()
    if int(info.get("epochs_completed") or 0) < epochs:
        return False
    if info.get("status") != Status.FINISHED:
        with attempt(experiment, running_command(), console=False, records_ending=False):  # the one writer
            record_ending(experiment, finished())
    return True


def _sweep_tracking_uri(sweep_root: Path) -> Optional[str]:
    """The MLflow server the sweep logs to (`sweep --mlflow`, in sweep.json), or None: the settings say."""
    from experiments_manager.sweeps.folder import SweepFolder

    return SweepFolder(sweep_root).spec().get("mlflow_tracking_uri")


def _noted(record: TrialRecord, experiment: Experiment, sweep_root: Path) -> ContextManager[None]:
    """The sweep learns where the trial trains; the experiment, which sweep it belongs to."""
    record.update(experiment=str(experiment.root.resolve()))
    experiment.record.sweep(str(sweep_root.resolve()))
    return contextlib.nullcontext()


def _stop_when_orphaned(parent_pid: int) -> None:
    """SIGTERM to this process once the parent is gone: training checkpoints and ends `interrupted`."""
    stop_when_orphaned(parent_pid, f"the sweep process {parent_pid} of this trial", ORPHAN_CHECK_SECS)


if __name__ == "__main__":
    sys.exit(main())
