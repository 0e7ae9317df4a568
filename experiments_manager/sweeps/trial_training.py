"""One sweep trial trained in this process (a warm trial host's, `trial_host.py`): a new experiment from the settings
and the trial's hparams, or the trial's experiment continued from its checkpoint to its rung, as `experiments-manager
train` and `train --resume` train them; the trial's record learns the experiment's folder.

Example:

```python
code = train_trial(TrialRequest(record="sweep/trials/trial-0001.json", log="sweep/trials/trial-0001.log",
                                settings="settings.py", hparams={"learningRate": 0.01}))
```
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager, Optional

from experiments_manager.utils.errors import EXIT_TEMPFAIL, EXIT_USER_ERROR, UserInputError, print_problems

if TYPE_CHECKING:
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.training.built_model import BuiltModel
    from experiments_manager.utils.atomic import PathLike


@dataclasses.dataclass(frozen=True)
class TrialRequest:
    """One trial for a host: a new experiment from `settings` with `hparams`, or `resume` continued.

    Args:
        record: the trial's record (`trials/trial-NNNN.json`): the host notes the experiment's folder in it.
        log: the trial's output log; the host appends to it.
        settings: the settings file a new experiment trains from (None with `resume`).
        script: the user's file the settings' code sees as `__file__` (a resumed sweep runs its copy of the
            settings as the user's file, `settings/script.py`; default None: `settings` itself).
        hparams: the new experiment's hparam overrides (default none).
        resume: the experiment to continue instead (default None).
        epochs: train to this many epochs in all (a scheduler's rung) instead of the settings' `nbEpoch` (default
            None).
        environment: variables set for this trial only (what the worker saw of the experiment's previous writer,
            `LeaseWatch.handed_down`; default none).
        trust_code: with `resume`, run the experiment's copies although another user owns them (the sweep was given
            `--trust-code`; default False: refused in one line, as `train --resume` does).

    Example:

    ```python
    line = TrialRequest(record="trials/trial-0003.json", log="trials/trial-0003.log", resume=folder,
                        epochs=3).to_line()                  # what a worker writes to its host
    request = TrialRequest.from_line(line)                   # what the host reads
    ```
    """

    record: str
    log: str
    settings: Optional[str] = None
    script: Optional[str] = None
    hparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    resume: Optional[str] = None
    epochs: Optional[int] = None
    environment: dict[str, str] = dataclasses.field(default_factory=dict)
    trust_code: bool = False

    def to_line(self) -> str:
        return json.dumps(dataclasses.asdict(self)) + "\n"

    @classmethod
    def from_line(cls, line: str) -> "TrialRequest":
        return cls(**json.loads(line))


@dataclasses.dataclass
class TrialTrained:
    """How a trial trained in this process ended.

    Attributes:
        exit_code: what `experiments-manager train` would have exited with.
        experiment: the trial's experiment folder (resolved), once it exists, else None.
        built: the model as the trial left it at its rung (`TrainingOutcome.built`), for its next rung in this
            process (`train_trial(warm=...)`), or None.
    """

    exit_code: int
    experiment: Optional[str] = None
    built: Optional[BuiltModel] = None


def train_trial(request: TrialRequest, warm: Optional[BuiltModel] = None) -> TrialTrained:
    """Trains one trial in this process: a new experiment, or the record's experiment continued; notes the
    experiment's folder in the trial's record.

    Args:
        request: the `TrialRequest`.
        warm: the model this process trained the requested experiment with at its last rung (default None): its
            next rung continues with it (its checkpoint restored into it) instead of building a new one.
    """
    from experiments_manager import training
    from experiments_manager.sweeps.journal import TrialRecord
    from experiments_manager.utils.environment_failures import environment_failure_line

    record = TrialRecord(request.record)
    sweep_root = record.path.parent.parent

    def noted(experiment: Experiment) -> ContextManager[None]:  # `alongside`: once the experiment folder exists
        return _noted(record, experiment, sweep_root=sweep_root)

    try:
        if request.resume:
            if _reached(request.resume, request.epochs):
                return TrialTrained(0)
            # the sweep compared its code with what its trials ran before it resumed (sweeps/code_check.py); whose
            # the trial's folder is, is checked here unless the sweep was trusted (SweepFolder.refuse_foreign_code)
            outcome = training.resume(request.resume, alongside=noted, accept_code_change=True,
                                      trust_code=request.trust_code, epochs=request.epochs, warm=warm,
                                      command=resume_command(request.resume, request.epochs))
        else:
            from experiments_manager.settings import load_settings

            settings = load_settings(str(request.settings), request.hparams, script=request.script)
            if request.epochs is not None:
                settings.train_for(request.epochs)
            outcome = training.train(settings, alongside=noted, working_folder=sweep_root,
                                     mlflow=_sweep_tracking_uri(sweep_root),
                                     command=equivalent_train_command(settings.script, request.hparams))
    except UserInputError as error:
        print_problems(error.problems)
        record.update(reason="; ".join(error.problems))
        return TrialTrained(getattr(error, "exit_code", EXIT_USER_ERROR))  # 75: another writer holds the experiment
    except OSError as error:  # the machine failed (a full disk, a quota, ...): the trial is tried again later
        line = environment_failure_line(error)
        if line is None:
            raise
        print_problems(line)
        return TrialTrained(EXIT_TEMPFAIL)
    experiment = str(outcome.experiment.root.resolve()) if outcome.experiment is not None else None
    return TrialTrained(outcome.exit_code, experiment, outcome.built if request.epochs is not None else None)


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


def _noted(record: Any, experiment: Experiment, sweep_root: Path) -> ContextManager[None]:
    """The sweep learns where the trial trains; the experiment, which sweep it belongs to."""
    record.update(experiment=str(experiment.root.resolve()))
    experiment.record.sweep(str(sweep_root.resolve()))
    return contextlib.nullcontext()


def equivalent_train_command(settings_path: PathLike, hparams: dict[str, Any]) -> list[str]:
    """The `experiments-manager train` line that reproduces a trial on its own (recorded in run.json)."""
    command = ["experiments-manager", "train", "-u", str(settings_path)]
    for name, value in hparams.items():
        command += ["--hparam", f"{name}={value!r}"]
    return command


def resume_command(experiment: PathLike, epochs: Optional[int]) -> list[str]:
    """The `experiments-manager train --resume` line of a continued trial (recorded in its attempt)."""
    return ["experiments-manager", "train", "--resume", str(experiment)] + (
        ["--epochs", str(epochs)] if epochs is not None else [])
