"""What a resume does, decided in one place: `plan_resume(state, request, role)` -> `ResumePlan`.

Resume is "run again in the same folder" (as Keras' `BackupAndRestore` and Orbit's `restore_or_initialize` make
it): what the folder holds (`RunFolderState`: run.json, the latest checkpoint's epochs, the code that changed since
the last attempt) and what was asked (`ResumeRequest`: `train --resume RUN`'s flags, `em.resume`'s arguments) give
one `ResumePlan`: report a finished run, train in a private replica (a multi-worker run's non-chief worker), or a
new attempt in the folder, with the epochs to train to, the code to run and the records to keep. Every rule that
refuses a resume for what the folder holds or what was asked is here, checked before anything is written (one line,
exit code 2); `training/entry_points.Resumption` carries the plan out (the settings' own checks, the cluster's,
Kafka's and the dry build's refusals come as the settings load, still before the lease), and the trainer restores
the checkpoint. The `train` command's flags that go together only with `--resume` (or only without) are checked
here too (`TrainFlags.refusal`). Pure: no TensorFlow, no writes.

Example:

```python
request = ResumeRequest(more_epochs=5)
plan = plan_resume(RunFolderState.read(Experiment.open(folder), request), request, ResumeRole.ALONE)
plan.step, plan.epochs, plan.extended_from      # (<ResumeStep.TRAIN: 'train'>, 15, 10)
```
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from experiments_manager.run.attempts import ACCEPT_CODE_CHANGE_FLAG, code_changes, epochs_asked, recorded_code
from experiments_manager.run.record import Status
from experiments_manager.utils.command_name import command_name
from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.record import RunRecord

SETTINGS_SOURCES = ("copy", "original")


@dataclasses.dataclass(frozen=True)
class ResumeRequest:
    """What a resume is asked to do.

    Args:
        epochs: train up to this many epochs in all, the run finished or not (default None: the settings' `nbEpoch`,
            or what the run's last extension asked for).
        more_epochs: train this many epochs more than the run has (default None; not with `epochs`).
        accept_code_change: train on although the code changed since the last attempt (default False: refused).
        settings_source: 'copy' (default: the run's copies of its settings and model files) or 'original' (the
            user's files, which replace the copies).
        kafka_bootstrap_servers: the Kafka brokers replacing the recorded ones (default None: the recorded ones).
        mlflow: a checked tracking URI to log to (default None: the server run.json names, if any).

    Raises:
        UserInputError: another `settings_source` (both `epochs` and `more_epochs`: `plan_resume`, naming the run).
    """

    epochs: Optional[int] = None
    more_epochs: Optional[int] = None
    accept_code_change: bool = False
    settings_source: str = "copy"
    kafka_bootstrap_servers: Optional[str] = None
    mlflow: Optional[str] = None

    def __post_init__(self) -> None:
        if self.settings_source not in SETTINGS_SOURCES:
            raise UserInputError(f"settings_source: expected one of {', '.join(SETTINGS_SOURCES)}, "
                                 f"got {self.settings_source!r}")

    @property
    def extends(self) -> bool:
        """The run is extended (`epochs` or `more_epochs`): its checkpoint's epochs are read to check it."""
        return self.epochs is not None or self.more_epochs is not None


@dataclasses.dataclass(frozen=True)
class RunFolderState:
    """What a run's folder holds that a resume is planned from.

    Args:
        root: the experiment folder (for the messages).
        record: run.json, as read (`Experiment.run_info`).
        checkpoint_epochs: the epochs the newest good checkpoint completed; None when there is none, or when it
            was not read (a resume that does not extend the run does not need it).
        code_changes: the files changed since the last attempt that recorded its code (`Experiment.code_changes`;
            not read for a finished run that is not extended).
    """

    root: str
    record: RunRecord
    checkpoint_epochs: Optional[int] = None
    code_changes: tuple[str, ...] = ()

    @classmethod
    def read(cls, experiment: Experiment, request: ResumeRequest) -> "RunFolderState":
        """Reads the folder (nothing is written): the newest checkpoint's state when `request` extends the run, the
        code's changes unless the run finished and is not extended (nothing then runs)."""
        from experiments_manager.run.checkpointing import Checkpointer

        record = experiment.run_info()
        state = Checkpointer(experiment.checkpoints_dir).latest_state() if request.extends else None
        runs = request.extends or record.get("status") != Status.FINISHED
        changes = code_changes(recorded_code(record), experiment.root) if runs else []  # (run.json read once)
        return cls(str(experiment.root), record, state["epochs_completed"] if state else None, tuple(changes))


class ResumeRole(enum.Enum):
    """Which process of the run resumes: alone, a multi-worker run's chief, or one of its other workers."""

    ALONE = "alone"
    CHIEF = "chief"
    WORKER = "worker"


class ResumeStep(enum.Enum):
    """What the resume does."""

    REPORT_FINISHED = "report finished"  # a finished run not extended: nothing to train (tracking records left sent)
    TRAIN_AS_WORKER = "train as worker"  # a non-chief worker: in a private replica, in step with the chief
    TRAIN = "train"  # a new attempt in the folder, its lease taken


@dataclasses.dataclass(frozen=True)
class ResumePlan:
    """A resume, decided: what `training.entry_points.Resumption` carries out.

    Attributes:
        step: the `ResumeStep`.
        record: run.json as it was read.
        epochs: the epochs in all this attempt trains to (None: the settings' `nbEpoch`).
        extended_from: the epochs the run had when this extension began (None: not an extension).
        code_changes: the changed files accepted (recorded in the new attempt).
        settings_source: 'copy' or 'original' (the user's files replace the copies once loaded and checked).
        dry_build: build the model once before the lease (the code differs from the checkpoint's).
        kafka_bootstrap_servers: the Kafka brokers the attempt reads from (given, else recorded), or None.
        tracking_uri: the tracking server asked for (None: the one run.json names).
        send_tracking_left: a finished tracked run: send the records its outbox holds.
    """

    step: ResumeStep
    record: RunRecord
    epochs: Optional[int] = None
    extended_from: Optional[int] = None
    code_changes: tuple[str, ...] = ()
    settings_source: str = "copy"
    dry_build: bool = False
    kafka_bootstrap_servers: Optional[str] = None
    tracking_uri: Optional[str] = None
    send_tracking_left: bool = False


def plan_resume(state: RunFolderState, request: ResumeRequest, role: ResumeRole) -> ResumePlan:
    """The `ResumePlan` for `state` as `request` asks, in `role`; every refusal is one line naming the run.

    Args:
        state: the folder's `RunFolderState` (with the checkpoint's epochs when `request.extends`).
        request: the `ResumeRequest`.
        role: the `ResumeRole` of this process.

    Raises:
        UserInputError: both `epochs` and `more_epochs`; an extension to no more epochs than the run has, or of a run
            without its checkpoint; code changed since the last attempt without `accept_code_change`.

    Example:

    ```python
    plan_resume(RunFolderState("run", {"status": "finished"}), ResumeRequest(), ResumeRole.ALONE).step
    # ResumeStep.REPORT_FINISHED
    ```
    """
    record = state.record
    refuse_federation_part(state.root, record)
    if request.epochs is not None and request.more_epochs is not None:
        raise UserInputError(f"{state.root}: epochs, more_epochs: expected one of them, got both")
    tracked = bool((record.get("mlflow") or {}).get("tracking_uri"))
    if record.get("status") == Status.FINISHED and not request.extends:
        return ResumePlan(ResumeStep.REPORT_FINISHED, record, tracking_uri=request.mlflow,
                          send_tracking_left=tracked and role is not ResumeRole.WORKER)
    epochs, extended_from = _epochs_total(state, request)
    if role is ResumeRole.WORKER:  # the chief checks the code and writes the folder
        return ResumePlan(ResumeStep.TRAIN_AS_WORKER, record, epochs, extended_from)
    changes = state.code_changes
    if changes and not request.accept_code_change:
        raise UserInputError(f"{state.root}: the code changed since the last attempt ran: {', '.join(changes)}; put it "
                             f"back, or resume with {ACCEPT_CODE_CHANGE_FLAG} to train on with it (recorded in "
                             "run.json)")
    original = request.settings_source == "original"
    return ResumePlan(ResumeStep.TRAIN, record, epochs, extended_from, changes, request.settings_source,
                      dry_build=bool(changes or original) and role is ResumeRole.ALONE,  # no multi-worker strategy yet
                      kafka_bootstrap_servers=request.kafka_bootstrap_servers or record.get("kafka_bootstrap_servers"),
                      tracking_uri=request.mlflow)


def is_federation(record: RunRecord) -> bool:
    """Whether run.json is a federation's server folder (its `federated` strategy and rounds)."""
    return isinstance(record.get("federated"), dict)


def refuse_federation_part(root: object, record: RunRecord) -> None:
    """Refuses, in one line, to resume a federation's server or client folder as one training run (it would train
    one client's data alone and set the federation's versions aside): a federation resumes as a federation.

    Raises:
        UserInputError: `record` is a federation's server's or one of its clients' (exit 2).
    """
    if is_federation(record):
        raise UserInputError(f"{root}: a federation's server folder: expected to resume it as a federation "
                             f"({command_name()} train --resume {root}, or federated simulate --resume {root}), "
                             "not as one training run")
    if isinstance(record.get("federated_client"), dict):
        server = Path(str(root)).parent.parent  # SERVER/clients/client_<i>
        raise UserInputError(f"{root}: a federated client's folder: it trains only within its federation; resume "
                             f"the federation: {command_name()} train --resume {server}")


def _epochs_total(state: RunFolderState, request: ResumeRequest) -> tuple[Optional[int], Optional[int]]:
    """(the epochs in all this attempt trains to, or None for the settings' `nbEpoch`; the epochs the run had when
    this attempt extends it, or None when it does not)."""
    record = state.record
    if not request.extends:
        return epochs_asked(record.get("attempts")), None  # a resumed extension trains to what it asked for
    done = state.checkpoint_epochs or 0
    if state.checkpoint_epochs is None and record.get("epochs_completed"):
        raise UserInputError(f"{state.root}: --epochs: expected a run with a checkpoint to continue from, got none "
                             f"(removed?): start a new run from its weights with --init-from {state.root}")
    base = done
    pending = _unfinished_extension(record)
    if request.more_epochs is not None and pending is not None:  # a requeued `--more-epochs K` job: K from its start
        base = pending
    total = request.epochs if request.epochs is not None else base + (request.more_epochs or 0)
    if total <= done:
        raise UserInputError(f"{state.root}: --epochs: expected more than the {done} epochs the run has trained, "
                             f"got {total}")
    return total, base


def _unfinished_extension(record: RunRecord) -> Optional[int]:
    """The epochs a run had when its latest extension began, while that extension has not finished (a preempted
    `train --resume RUN --more-epochs K` job requeued with the same command); else None."""
    if record.get("status") == Status.FINISHED:
        return None
    for attempt in reversed(record.get("attempts") or []):
        began = attempt.get("extended_from") if isinstance(attempt, dict) else None
        if isinstance(began, int) and not isinstance(began, bool):
            return began
    return None


@dataclasses.dataclass(frozen=True)
class TrainFlags:
    """The `train` command's flags that depend on each other, as given (before a requeue file makes a resume).

    Args:
        resume: `--resume RUN` given.
        requeue_file: `--requeue-file FILE` given (a rerun resumes the folder FILE names).
        hparams: `--hparam` given.
        epochs: `--epochs N` given.
        more_epochs: `--more-epochs K` given.
        init_from: `--init-from RUN` given.
        skip_mismatch: `--skip-mismatch` given.
        accept_code_change: `--accept-code-change` given.
        settings_source: `--settings-source`'s value.
        serve: `--serve` given.
        keep_serving: `--keep-serving` given.
    """

    resume: bool = False
    requeue_file: bool = False
    hparams: bool = False
    epochs: bool = False
    more_epochs: bool = False
    init_from: bool = False
    skip_mismatch: bool = False
    accept_code_change: bool = False
    settings_source: str = "copy"
    serve: bool = False
    keep_serving: bool = False

    def refusal(self) -> Optional[str]:
        """The first rule the flags break, as the one line the command prints, or None."""
        may_resume = self.resume or self.requeue_file
        extension = "--epochs" if self.epochs else "--more-epochs" if self.more_epochs else None
        rules: list[tuple[Any, str]] = [
            (self.keep_serving and not self.serve, "--keep-serving: only with --serve"),
            (extension and not self.resume, f"{extension}: only with --resume RUN (a new run trains the settings' "
             "nbEpoch; --hparam nbEpoch=N where it is an hparam)"),
            (self.init_from and self.resume, "--init-from: only for a new run (-u SETTINGS), not with --resume"),
            (self.skip_mismatch and not self.init_from, "--skip-mismatch: only with --init-from RUN (the weights it "
             "loads)"),
            (self.accept_code_change and not may_resume, "--accept-code-change: only with --resume or "
             "--requeue-file (a new run records the code it starts with)"),
            (self.settings_source != "copy" and not may_resume, "--settings-source: only with --resume or "
             "--requeue-file (a new run runs the file given with -u)"),
            (self.hparams and self.resume, "--hparam: not accepted with --resume (the run keeps its own hparams)"),
        ]
        return next((line for broken, line in rules if broken), None)
