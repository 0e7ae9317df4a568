"""sweep.json: its one typed definition (`SweepSpec`) and its named transitions (`SweepRecordWriter`): what a
sweep's commands and workers change in it, each one typed, as `run.record_writer.RunRecordWriter` is for run.json.

Every change goes through `SweepFolder.update_spec`, which keeps the sweep's choices in `choices/NNNN.json` (a stale
read never undoes one) and its progress in sweep.json; the callers hold the sweep's lock where two workers could
race. No other module writes sweep.json's fields by name.

Example:

```python
sweep.record.running()
sweep.record.progress(trials_done=3, best=row)
sweep.record.ended(Status.FINISHED, exit_code=0)
```
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, TypedDict

from experiments_manager.run.names import now
from experiments_manager.run.record import Status
from experiments_manager.utils.errors import EXIT_TEMPFAIL


class SweepSpec(TypedDict, total=False):
    """sweep.json, its one typed definition: the sweep's choices (`driver._new_spec`, and what a resume changes),
    then what the workers derive (`PROGRESS_FIELDS`). Every field may be absent (an older engine's sweep.json)."""

    settings_file: str
    model_file: str
    settings_sha256: Optional[str]  # None: the file could not be read
    model_sha256: Optional[str]
    working_dir: str
    fixed_hparams: dict[str, Any]
    space: dict[str, str]  # hparam name -> its expression's text (`SearchSpace.describe`)
    algo: str
    seed: int
    max_evals: int
    parallelism: int
    spark_master: Optional[str]
    monitored_loss_name: str
    workers: int
    startup_trials: Optional[int]
    scheduler: Optional[dict[str, Any]]  # `scheduler.RungSchedule.to_json()`, None without a scheduler
    code: Optional[dict[str, Optional[str]]]  # absolute file -> SHA-256 a resume accepted (`code_check.py`)
    coordination: Optional[str]  # `legacy.COORDINATION` once workers share its numbered records
    created: str
    choices_version: int  # `CHOICES_VERSION`
    reason: str  # why the sweep stopped on an environment failure (a full disk...)
    status: str
    ended: str
    exit_code: int
    trials_done: int
    best: Optional[dict[str, Any]]  # the best trial's results row (`results.best_row`)
    pid: int
    device_hours: float
    device_hours_full: Optional[float]
    trials: Optional[list[dict[str, Any]]]  # with a scheduler: each trial's status, rung and epochs trained
    mlflow_tracking_uri: Optional[str]  # `sweep --mlflow`: the MLflow server every trial logs to


class SpecFolder(Protocol):
    """What the writer uses of a `folder.SweepFolder` (which holds its writer: no import back)."""

    def update_spec(self, **fields: Any) -> SweepSpec: ...


class SweepRecordWriter:
    """The transitions of one sweep's sweep.json.

    Args:
        sweep: the `SweepFolder` whose sweep.json it writes.
    """

    def __init__(self, sweep: SpecFolder) -> None:
        self._sweep = sweep

    def chosen(self, choices: SweepSpec) -> SweepSpec:
        """The sweep's choices (a new sweep's, what a resume changes, a coordination), each recorded once."""
        return self._sweep.update_spec(**choices)

    def running(self) -> SweepSpec:
        """A worker trains a trial: running again (a worker that left may have said interrupted)."""
        return self._sweep.update_spec(status=Status.RUNNING.value)

    def progress(self, trials_done: int, best: Any, device_hours: Optional[float] = None,
                 device_hours_full: Optional[float] = None, trials: Optional[list[dict[str, Any]]] = None) -> SweepSpec:
        """The counts the trials give: how many are done, the best row, their device-hours (with a scheduler: what
        training every trial to the end would have cost, and each trial's state)."""
        fields: dict[str, Any] = {"trials_done": trials_done, "best": best}
        if device_hours is not None or device_hours_full is not None or trials is not None:
            fields.update(device_hours=device_hours, device_hours_full=device_hours_full, trials=trials)
        return self._sweep.update_spec(**fields)

    def ended(self, status: Status, exit_code: Optional[int] = None) -> SweepSpec:
        """How the sweep stands as a process leaves it: running (other workers hold trials: nothing more), else
        finished, failed or interrupted with its exit code and end time."""
        if status == Status.RUNNING:
            return self._sweep.update_spec(status=status.value)
        return self._sweep.update_spec(status=status.value, ended=now(), exit_code=exit_code)

    def stopped_by_environment(self, reason: str) -> SweepSpec:
        """The machine or the data stopped it (a full disk, a lost node): interrupted, exit 75, `reason` said."""
        return self._sweep.update_spec(status=Status.INTERRUPTED.value, ended=now(), exit_code=EXIT_TEMPFAIL,
                                       reason=reason)
