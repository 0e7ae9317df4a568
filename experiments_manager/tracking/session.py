"""One attempt's tracking: what it appends to the run's outbox, and the bridge that sends it while it trains.

`tracked(experiment, uri)` is entered inside the attempt (`run.lifecycle.attempt`, which holds the lease): a run
tracked once is tracked by every later attempt (run.json's `mlflow` names the server; a resume may name another).
The first attempt appends the run's start (MLflow experiment = the settings' session name, run name = the folder's,
its hparams as params, the settings and model file names, host, Slurm job and engine version as tags), a resume an
`attempt` entry (the run is RUNNING again), each epoch its metrics once its checkpoint is durable
(`epoch_logger.MlflowEpochLogger`), then each exported version run.json lists by then (`append_versions`: a version
better than the run's earlier ones goes to the registered model, the served model's name unless the settings
name another), and the end of the attempt its status (finished -> FINISHED, failed -> FAILED,
interrupted -> KILLED) with the run's files as artifacts. No MLflow import here: the bridge's thread imports it.

Example:

```python
with attempt(experiment, command), tracked(experiment, "http://127.0.0.1:5000") as tracking:
    Trainer(experiment, settings, tracking=tracking).run()
```
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple, Optional

from experiments_manager.run import history_rows
from experiments_manager.run.attempts import device_hours
from experiments_manager.run.endings import ending_of
from experiments_manager.run.record import Status
from experiments_manager.run.version_records import records_of
from experiments_manager.tracking.bridge import MlflowBridge
from experiments_manager.tracking.outbox import Outbox, OutboxEntry, SentState
from experiments_manager.tracking.options import tracking_uri
from experiments_manager.utils.command_name import command_name

if TYPE_CHECKING:
    from experiments_manager.run.experiment import Experiment

_LOG = logging.getLogger(__name__)
MLFLOW_STATUS = {Status.FINISHED: "FINISHED", Status.FAILED: "FAILED", Status.INTERRUPTED: "KILLED"}
ARTIFACTS = ("run.json", "history.csv", "training_curves.png", "experiment_settings.py")


class Completion(NamedTuple):
    """What `TrackingSession.complete` found and did: the outbox, its damaged lines (numbers from 1, dropped), and
    how many records it appended from the run's files."""

    outbox: Path
    damaged: list[int]
    rebuilt: int

    def __str__(self) -> str:
        said = []
        if self.damaged:
            lines = ", ".join(map(str, self.damaged[:10])) + (" ..." if len(self.damaged) > 10 else "")
            said.append(f"{self.outbox}: line(s) {lines} damaged (not a record): left out")
        if self.rebuilt:
            said.append(f"{self.rebuilt} record(s) it lacked rebuilt from run.json and history.csv")
        return "; ".join(said)


class TrackingSession:
    """An attempt's outbox and bridge.

    Args:
        experiment: the run (its lease held by this process).
        uri: the tracking server.
    """

    def __init__(self, experiment: Experiment, uri: str) -> None:
        self.experiment = experiment
        self.uri = uri
        self.outbox = Outbox(experiment.root, check_writer=experiment.check_writer)
        self.bridge = MlflowBridge(self.outbox, uri, on_run=self._record_run,
                                   sync_command=f"{command_name()} mlflow sync {experiment.root}")

    def begin(self) -> None:
        """Appends the run's start (first attempt), or what the outbox lacks (`complete`) and the attempt's, and
        starts sending."""
        info = self.experiment.run_info()
        if not any(entry.get("kind") == "start" for entry in self.outbox.entries()):
            self.append(self._start_entry(info))
        else:
            completion = self.complete()
            if completion.damaged:
                _LOG.warning("MLflow: %s", completion)
            self.append({"kind": "attempt", "tags": _attempt_tags(info)})
        _LOG.info("MLflow: logging to %s (experiment %r, run %r)", self.uri, _experiment_name(info),
                  self.experiment.name)  # said before anything is sent
        self.bridge.start()

    def complete(self) -> Completion:
        """Appends what the run's own files hold and the outbox lacks, its damaged lines dropped first: the start,
        each epoch run.json counts as completed (history.csv's values), each version run.json lists, and the end of
        a run that ended (run.json's status) when the outbox does not hold it. What a cut-short or damaged outbox,
        or a kill between a record and its append, lost is then sent as the run would have sent it."""
        damaged = self.outbox.damaged_lines()
        if damaged:
            self.outbox.drop_damaged()
        entries = self.outbox.entries()
        info = self.experiment.run_info()
        ended = next((entry.get("kind") == "end" for entry in reversed(entries)  # an attempt: RUNNING again
                      if entry.get("kind") in ("attempt", "end")), False)
        appended = 0
        if not any(entry.get("kind") == "start" for entry in entries):
            self.append(self._start_entry(info))
            appended += 1
        logged = {entry.get("step") for entry in entries if entry.get("kind") == "metrics"}
        completed = int(info.get("epochs_completed") or 0)
        for row in history_rows.examine(self.experiment.history_csv)[1]:
            epoch = int(row[history_rows.EPOCH])
            if epoch <= completed and epoch not in logged:
                self.append({"kind": "metrics", "step": epoch, "metrics": finite_numbers(
                    {key: value for key, value in row.items() if key != history_rows.EPOCH})})
                appended += 1
        appended += self.append_versions()
        if not ended and info.get("status") in MLFLOW_STATUS:
            self.append(self._end_entry(info))
            appended += 1
        return Completion(self.outbox.path, damaged, appended)

    def _start_entry(self, info: Any) -> OutboxEntry:
        versions = info.get("versions") or {}
        return {"kind": "start", "experiment": _experiment_name(info), "run_name": self.experiment.name,
                "params": _params(info), "tags": {**_attempt_tags(info),
                                                  "engine_version": str(versions.get("experiments_manager", "")),
                                                  "git_commit": str(info.get("git_commit") or "")}}

    def append_versions(self) -> int:
        """Appends the exported versions run.json lists that the outbox does not hold yet (on disk by then: run.json
        lists a version once it is); returns how many. One better than every earlier version of the run (its
        monitored value; without one: the version of the run's best epoch) names the registered model it joins."""
        info = self.experiment.run_info()
        known = self.outbox.versions()
        held = {entry.get("version", 0) for entry in known}
        records = records_of(info)  # a damaged record is left out
        maximized = info.get("monitor_mode") == "max"
        values = [value for entry in known for value in entry.get("metrics", {}).values()]
        missing = sorted(number for number in records if number not in held)
        for version in missing:
            record = records[version]
            value = record.get("value") if isinstance(record.get("value"), (int, float)) else None
            epoch = record.get("epoch") if isinstance(record.get("epoch"), int) else None
            better = (epoch is not None and epoch == info.get("best_epoch")) if value is None else all(
                value > earlier if maximized else value < earlier for earlier in values)
            entry: OutboxEntry = {"kind": "version", "version": version, "step": int(epoch or 0),
                                  "path": str((self.experiment.export_dir / str(version)).relative_to(
                                      self.experiment.root)),
                                  "metrics": {str(record.get("monitor")): float(value)} if value is not None else {},
                                  "tags": {"monitor_mode": str(info.get("monitor_mode") or "")}}
            if better:
                entry["registered_model"] = registered_model_of(info)
            self.append(entry)
            if value is not None:
                values.append(float(value))
        return len(missing)

    def append(self, entry: OutboxEntry) -> None:
        """Appends `entry` to the outbox and wakes the bridge."""
        self.outbox.append(entry)
        self.bridge.wake()

    def end(self, error: Optional[BaseException] = None) -> None:
        """Appends how the attempt ended (run.json's status; `error` when nothing recorded one) and the run's files,
        then gives the server a last chance (`MlflowBridge.close`)."""
        info = self.experiment.run_info()
        try:
            self.append_versions()  # the last one, written while training ended
        except Exception as failure:  # noqa: BLE001 - the end below is what must be recorded
            _LOG.warning("MLflow: the last exported versions were not recorded in the outbox: %s", failure)
        try:
            self.append(self._end_entry(info, error))
        except Exception as failure:  # noqa: BLE001 - a lost lease, a full disk: the run's own ending is what it says
            _LOG.debug("MLflow: the end of the attempt was not recorded in the outbox: %s", failure)
        finally:
            self.bridge.close()

    def _end_entry(self, info: Any, error: Optional[BaseException] = None) -> OutboxEntry:
        """How the attempt ended: run.json's status (`error`'s ending while it says running, else failed), the run's
        best value and cost, its files to upload."""
        status = info.get("status")
        if status == Status.RUNNING or status is None:
            ending = ending_of(error) if error is not None else None
            status = ending.status if ending is not None else Status.FAILED
        best = info.get("best_value")
        return {"kind": "end", "status": MLFLOW_STATUS.get(Status(status), "FAILED"),
                "files": [*ARTIFACTS, f"{info.get('model_name')}.py"],
                "metrics": {**({"best_value": float(best)} if isinstance(best, (int, float)) else {}), **_cost(info)},
                "step": int(info.get("best_epoch") or 0),
                "tags": {"monitor": str(info.get("monitored_loss_name") or ""),
                         "monitor_mode": str(info.get("monitor_mode") or "")}}

    def _record_run(self, state: SentState) -> None:
        """run.json records the MLflow run (the bridge's thread, once the server made or found it)."""
        self.experiment.record.mlflow({"tracking_uri": self.uri, "experiment_id": state.get("experiment_id"),
                                       "run_id": state.get("run_id")})


def finite_numbers(values: dict[str, Any]) -> dict[str, float]:
    """The finite numbers among an epoch's logs or history row (MLflow takes NaN, but a plot of one is empty)."""
    numbers = {}
    for key, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            numbers[key] = number
    return numbers


def _attempt_tags(info: Any) -> dict[str, str]:
    """The host, the attempt's number and the Slurm job of the attempt now."""
    return {"host": socket.gethostname(), "attempt": str(len(info.get("attempts") or [])),
            **({"slurm_job_id": os.environ["SLURM_JOB_ID"]} if os.environ.get("SLURM_JOB_ID") else {})}


def _experiment_name(info: Any) -> str:
    """The run's MLflow experiment: run.json's, else the settings' session name."""
    return str((info.get("mlflow") or {}).get("experiment") or info.get("session_name") or "Default")


def registered_model_of(info: Any) -> str:
    """The registered model a run's improving versions join (`info`: its run.json; `mlflow.registered_model`, else
    the served model's name)."""
    return str((info.get("mlflow") or {}).get("registered_model") or info.get("model_name") or "model")


def _cost(info: Any) -> dict[str, float]:
    """What the run has cost so far: `epochs_completed` (a sweep trial's: the rung it reached) and `device_hours`."""
    hours = device_hours(info)
    return {"epochs_completed": float(info.get("epochs_completed") or 0),
            **({"device_hours": round(hours, 6)} if hours is not None else {})}


def _params(info: Any) -> dict[str, str]:
    """The run's hparams (nested ones as `a.b`) and its files, as MLflow params."""
    params: dict[str, str] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                add(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            params[prefix] = str(value)

    add("", info.get("hparams") or {})
    for key in ("settings_file", "model_file"):
        if info.get(key):
            params[key] = os.path.basename(str(info[key]))
    return params


def record_server(experiment: Experiment, uri: str, mlflow_experiment: Optional[str] = None,
                  registered_model: Optional[str] = None) -> None:
    """run.json's `mlflow` names the server the run logs to, its MLflow experiment and registered model (a run's
    names stay its own; default None: the settings' session name, the served model's name). A federation records it
    when its folder is made: its ServerApp, maybe in another process, is then tracked (`tracked(experiment, None)`)."""
    info = experiment.run_info()
    recorded = info.get("mlflow") or {}
    if recorded.get("tracking_uri") != uri or "registered_model" not in recorded:
        experiment.record.mlflow({"tracking_uri": uri, "experiment": recorded.get("experiment") or mlflow_experiment
                                  or info.get("session_name"), "registered_model": recorded.get("registered_model")
                                  or registered_model or info.get("model_name")})


def recorded_tracking_uri(experiment: Experiment) -> Optional[str]:
    """The tracking server the run's run.json names, checked as a flag's would be (a folder is data: a store's or a
    file's URI is refused, never written), or None for a run not tracked.

    Args:
        experiment: the run.

    Raises:
        UserInputError: not an http(s):// server's URI, in one line naming run.json's key.
    """
    recorded = (experiment.run_info().get("mlflow") or {}).get("tracking_uri")
    return tracking_uri(str(recorded), f"{experiment.run_file}: mlflow.tracking_uri") if recorded else None


def send_recorded_end(experiment: Experiment) -> None:
    """A tracked run whose process died before it told MLflow how it ended (another process recorded its ending in
    run.json: a sweep's worker, the federation command): that end appended and sent as the attempt would have (for
    up to `bridge.CLOSE_SECONDS`; what the server does not take stays for `mlflow sync`). Called by the run's writer
    (the lease held); nothing for a run not tracked."""
    uri = recorded_tracking_uri(experiment)
    if not uri:
        return
    session = TrackingSession(experiment, uri)
    if not session.outbox.exists():  # it died before its start was recorded: nothing of it to end
        return
    session.bridge.start()
    session.end()


@contextlib.contextmanager
def tracked(experiment: Experiment, uri: Optional[str], mlflow_experiment: Optional[str] = None,
            registered_model: Optional[str] = None) -> Iterator[Optional[TrackingSession]]:
    """Within the block the attempt is tracked at `uri` (or at the server run.json names; None and none recorded:
    not tracked, the block gets None).

    Args:
        experiment: the run, its lease held.
        uri: a checked tracking URI (`options.tracking_uri`), or None.
        mlflow_experiment: the MLflow experiment of a new run (default None: the settings' session name).
        registered_model: the registered model a new run's improving versions join (default None: the served
            model's name).
    """
    if not uri:
        uri = recorded_tracking_uri(experiment)
        if uri:  # a folder's choice of where its run goes: said before anything is sent
            _LOG.info("MLflow: logging to %s, the server %s names (--mlflow URI names another)", uri,
                      experiment.run_file)
    if not uri:
        yield None
        return
    record_server(experiment, uri, mlflow_experiment, registered_model)
    session = TrackingSession(experiment, uri)
    session.begin()
    try:
        yield session
    except BaseException as error:
        session.end(error)
        raise
    session.end()
