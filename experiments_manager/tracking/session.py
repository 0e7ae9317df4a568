"""One attempt's tracking: what it appends to the run's outbox, and the bridge that sends it while it trains.

`tracked(experiment, uri)` is entered inside the attempt (`run.lifecycle.attempt`, which holds the lease): a run
tracked once is tracked by every later attempt (run.json's `mlflow` names the server; a resume may name another).
The first attempt appends the run's start (MLflow experiment = the settings' session name, run name = the folder's,
its hparams as params, the settings and model file names, host, Slurm job and engine version as tags), a resume an
`attempt` entry (the run is RUNNING again), each epoch its metrics once its checkpoint is durable
(`epoch_logger.MlflowEpochLogger`), and the end of the attempt its status (finished -> FINISHED, failed -> FAILED,
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
import os
import socket
from typing import TYPE_CHECKING, Any, Iterator, Optional

from experiments_manager.run.endings import ending_of
from experiments_manager.run.record import Status
from experiments_manager.tracking.bridge import MlflowBridge
from experiments_manager.tracking.outbox import Outbox, OutboxEntry, SentState

if TYPE_CHECKING:
    from experiments_manager.run.experiment import Experiment

_LOG = logging.getLogger(__name__)
MLFLOW_STATUS = {Status.FINISHED: "FINISHED", Status.FAILED: "FAILED", Status.INTERRUPTED: "KILLED"}
ARTIFACTS = ("run.json", "history.csv", "training_curves.png", "experiment_settings.py")


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
                                   sync_command=f"experiments-manager mlflow sync {experiment.root}")

    def begin(self) -> None:
        """Appends the run's start (first attempt) or the attempt's, and starts sending."""
        info = self.experiment.run_info()
        attempt = len(info.get("attempts") or [])
        tags = {"host": socket.gethostname(), "attempt": str(attempt),
                **({"slurm_job_id": os.environ["SLURM_JOB_ID"]} if os.environ.get("SLURM_JOB_ID") else {})}
        name = (info.get("mlflow") or {}).get("experiment") or info.get("session_name") or "Default"
        if not any(entry.get("kind") == "start" for entry in self.outbox.entries()):
            versions = info.get("versions") or {}
            self.append({"kind": "start", "experiment": name,
                         "run_name": self.experiment.name, "params": _params(info),
                         "tags": {**tags, "engine_version": str(versions.get("experiments_manager", "")),
                                  "git_commit": str(info.get("git_commit") or "")}})
        else:
            self.append({"kind": "attempt", "tags": tags})
        self.bridge.start()
        _LOG.info("MLflow: logging to %s (experiment %r, run %r)", self.uri, name, self.experiment.name)

    def append(self, entry: OutboxEntry) -> None:
        """Appends `entry` to the outbox and wakes the bridge."""
        self.outbox.append(entry)
        self.bridge.wake()

    def end(self, error: Optional[BaseException] = None) -> None:
        """Appends how the attempt ended (run.json's status; `error` when nothing recorded one) and the run's files,
        then gives the server a last chance (`MlflowBridge.close`)."""
        info = self.experiment.run_info()
        status = info.get("status")
        if status == Status.RUNNING or status is None:
            ending = ending_of(error) if error is not None else None
            status = ending.status if ending is not None else Status.FAILED
        best = info.get("best_value")
        try:
            self.append({"kind": "end", "status": MLFLOW_STATUS.get(Status(status), "FAILED"),
                         "files": [*ARTIFACTS, f"{info.get('model_name')}.py"],
                         "metrics": {"best_value": float(best)} if isinstance(best, (int, float)) else {},
                         "step": int(info.get("best_epoch") or 0),
                         "tags": {"monitor": str(info.get("monitored_loss_name") or ""),
                                  "monitor_mode": str(info.get("monitor_mode") or "")}})
        except Exception as failure:  # noqa: BLE001 - a lost lease, a full disk: the run's own ending is what it says
            _LOG.debug("MLflow: the end of the attempt was not recorded in the outbox: %s", failure)
        finally:
            self.bridge.close()

    def _record_run(self, state: SentState) -> None:
        """run.json records the MLflow run (the bridge's thread, once the server made or found it)."""
        self.experiment.record.mlflow({"tracking_uri": self.uri, "experiment_id": state.get("experiment_id"),
                                       "run_id": state.get("run_id")})


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


@contextlib.contextmanager
def tracked(experiment: Experiment, uri: Optional[str],
            mlflow_experiment: Optional[str] = None) -> Iterator[Optional[TrackingSession]]:
    """Within the block the attempt is tracked at `uri` (or at the server run.json names; None and none recorded:
    not tracked, the block gets None).

    Args:
        experiment: the run, its lease held.
        uri: a checked tracking URI (`options.tracking_uri`), or None.
        mlflow_experiment: the MLflow experiment of a new run (default None: the settings' session name).
    """
    info = experiment.run_info()
    recorded = info.get("mlflow") or {}
    uri = uri or recorded.get("tracking_uri")
    if not uri:
        yield None
        return
    if recorded.get("tracking_uri") != uri or "experiment" not in recorded:  # the run's experiment stays its own
        experiment.record.mlflow({"tracking_uri": uri, "experiment": recorded.get("experiment") or mlflow_experiment
                                  or info.get("session_name")})
    session = TrackingSession(experiment, uri)
    session.begin()
    try:
        yield session
    except BaseException as error:
        session.end(error)
        raise
    session.end()
