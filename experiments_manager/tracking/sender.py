"""A run's outbox sent to an MLflow tracking server: one MLflow run per experiment folder, each entry once.

The MLflow run is found by its tag `experiments_manager.folder` (the folder's absolute path) before one is created, so
an attempt that died between creating it and recording its id continues it instead of making a second one. A sweep's
trial (run.json's `sweep`) is created as a child of the sweep's run (the one the sweep folder names, found by its
tag, or created): the sweep's run holds the best of its trials' `best_value` and runs while one of them does.
Entries go in order, after the last one `mlflow_sent.json` records, consecutive epochs' metrics in one request
(`log_batch`); that record is replaced after each request the server took. A record the server refuses (a 4xx: one it
will never take) is said in a warning and left out, listed as `refused`: it does not hold back the records after it.
Exported versions are sent by `models.py`. Imports MLflow (only called when a run is tracked).

Example:

```python
sent = send_pending(Outbox(folder), "http://127.0.0.1:5000")   # the number of entries the server took
```
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, cast

from experiments_manager.run.discovery import read_run_info
from experiments_manager.run.experiment import SWEEP_SPEC_NAME, Experiment
from experiments_manager.tracking.models import FOLDER_TAG, quoted, send_version
from experiments_manager.tracking.outbox import Outbox, OutboxEntry, SentState, SweepRun
from experiments_manager.utils.atomic import PathLike, write_json_atomically
from experiments_manager.utils.command_name import command_name
from experiments_manager.utils.exclusive_create import create_whole

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests a sweep's trials under the sweep's run
SWEEP_TAG = "experiments_manager.sweep"
SWEEP_RUN_NAME = "mlflow_sweep_run.json"  # in the sweep folder: the sweep's MLflow run
BATCH_METRICS = 1000  # MLflow's limits for one log_batch
BATCH_PARAMS = 100
PARAM_LENGTH = 6000


# 4xx: a request the server will never take (a name it does not accept, an endpoint an MLflow 2 server lacks: logged
# models): the record is left out, not retried forever
REFUSALS = frozenset({"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST", "INVALID_STATE",
                      "ENDPOINT_NOT_FOUND"})
_LOG = logging.getLogger(__name__)


class TrackingUnavailable(Exception):
    """The server did not take what was sent (down, unreachable, refusing): the entries stay in the outbox."""


class LocalDiskFailed(TrackingUnavailable):
    """This machine's disk failed a write or read the sending needs (full, read-only, out of quota, EIO): the
    server is not the cause, the entries stay in the outbox."""


class TrackingRefused(TrackingUnavailable):
    """The server answered with a client error (4xx) that no retry changes: a URI that is not its root (a path
    prefix: 404 for MLflow's API), credentials it refuses, a run deleted there."""


LOCAL_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO, errno.EACCES, errno.EPERM})


def client_settings() -> None:
    """Unless the user set them: one try with a 10-s timeout (MLflow's client retries 7 times with backoff, minutes
    against a dead server; the outbox keeps what was not sent), no "View run" lines on stdout from the thread, no
    progress bars of artifacts, no telemetry."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # no usage reports from compute nodes (its thread's session id once broke a send: "_MLFLOW_TELEMETRY_SESSION_ID")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def send_pending(outbox: Outbox, uri: str) -> int:
    """Sends the outbox's pending entries to the server at `uri`; returns how many it took.

    Raises:
        TrackingUnavailable: the server failed a request (what it took before is recorded as sent).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client_settings()
    pending = outbox.pending()
    if not pending:
        return 0
    client = MlflowClient(tracking_uri=uri)
    state: SentState = {**outbox.sent(), "tracking_uri": uri}
    sent = 0
    try:
        for group in _groups(pending):
            if "run_id" not in state:
                state.update(_run_of(client, uri, outbox.folder, _start_of(outbox)))
            try:
                _send(client, state, group, outbox)
            except MlflowException as error:
                if error.error_code not in REFUSALS or (error.error_code == "ENDPOINT_NOT_FOUND"
                                                        and group[0].get("kind") != "version"):
                    raise  # (a missing endpoint is a refusal only of logged models, which MLflow 2 lacks)
                numbers = [entry["n"] for entry in group]  # it will never take them: the next ones go on
                state["refused"] = [*state.get("refused", []), *numbers]
                _LOG.warning("MLflow: %s refused record(s) %s of %s (%s): left out", uri,
                             ", ".join(map(str, numbers)), outbox.path, one_line(error))
            state["sent_through"] = group[-1]["n"]
            sent += len(group)
            _mark_sent(outbox, state)
    except LocalDiskFailed:
        raise
    except (MlflowException, OSError) as error:  # requests' errors are OSErrors
        if sent:
            _mark_sent(outbox, state)
        if isinstance(error, OSError) and error.errno in LOCAL_DISK_ERRORS:
            raise LocalDiskFailed(f"this machine's disk: {one_line(error)}") from error
        if isinstance(error, MlflowException) and 400 <= error.get_http_status_code() < 500:
            raise TrackingRefused(f"it answered {error.get_http_status_code()}: {one_line(error)}") from error
        raise TrackingUnavailable(one_line(error)) from error
    _mark_sent(outbox, state)
    return sent


def _mark_sent(outbox: Outbox, state: SentState) -> None:
    """`outbox.mark_sent`, a failed write said as this machine's (`LocalDiskFailed`), not the server's."""
    try:
        outbox.mark_sent(state)
    except OSError as error:
        raise LocalDiskFailed(f"this machine's disk: {outbox.sent_path} could not be written: "
                              f"{error.strerror or one_line(error)}") from error


def _groups(entries: list[OutboxEntry]) -> list[list[OutboxEntry]]:
    """The entries in the requests that send them: consecutive epochs' metrics together (up to `BATCH_METRICS`
    values), any other entry alone."""
    groups: list[list[OutboxEntry]] = []
    size = 0
    for entry in entries:
        count = len(entry.get("metrics", {}))
        together = groups and entry.get("kind") == "metrics" and groups[-1][-1].get("kind") == "metrics"
        if together and size + count <= BATCH_METRICS:
            groups[-1].append(entry)
            size += count
        else:
            groups.append([entry])
            size = count
    return groups


def _start_of(outbox: Outbox) -> OutboxEntry:
    none: OutboxEntry = {"kind": "start"}
    return next((entry for entry in outbox.entries() if entry.get("kind") == "start"), none)


def _run_of(client: MlflowClient, uri: str, folder: Path, start: OutboxEntry) -> SentState:
    """The MLflow experiment and run of `folder`: found by its folder tag, or created."""
    from mlflow.exceptions import MlflowException

    name = start.get("experiment") or "Default"
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(name)
        except MlflowException:  # created meanwhile by another run
            made = client.get_experiment_by_name(name)
            if made is None:
                raise
            experiment_id = made.experiment_id
    else:
        experiment_id = experiment.experiment_id
    found = _run_tagged(client, experiment_id, folder)
    if found is not None:
        return {"experiment_id": experiment_id, "run_id": found}
    tags = {FOLDER_TAG: str(folder.resolve()), **start.get("tags", {})}
    sweep = _sweep_of(folder)
    if sweep is not None:  # a sweep's trial: a child of the sweep's run, which runs again
        tags[PARENT_TAG] = _sweep_run(client, uri, experiment_id, sweep)
    run = client.create_run(experiment_id, start_time=start.get("at"), run_name=start.get("run_name") or folder.name,
                            tags=tags)
    return {"experiment_id": experiment_id, "run_id": run.info.run_id}


def _sweep_run(client: MlflowClient, uri: str, experiment_id: str, sweep: Path) -> str:
    """The id of the sweep's MLflow run, RUNNING: the one the sweep folder names (`SWEEP_RUN_NAME`), else found by
    its folder tag, else created. The first trial to name its run in the folder wins: workers starting together
    (several processes, nodes) make one parent; a loser deletes the run it made."""
    from mlflow.exceptions import MlflowException

    record = sweep / SWEEP_RUN_NAME
    named = _sweep_run_named(record, uri)
    if named is not None:
        try:
            client.update_run(named, status="RUNNING")
            return named
        except MlflowException as error:
            if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):  # deleted, or a server
                raise                                                                      # that lost its database
    run_id = _run_tagged(client, experiment_id, sweep)
    if run_id is not None:
        client.update_run(run_id, status="RUNNING")
    else:
        run_id = client.create_run(experiment_id, run_name=sweep.name,
                                   tags={FOLDER_TAG: str(sweep.resolve()), SWEEP_TAG: "true"}).info.run_id
    mine: SweepRun = {"tracking_uri": uri, "run_id": run_id}
    if named is not None:  # the run it named is gone
        write_json_atomically(record, cast("dict[str, Any]", mine))
        return run_id
    if create_whole(record, cast("dict[str, Any]", mine)):
        return run_id
    winner = _sweep_run_named(record, uri)
    if winner is None or winner == run_id:
        return run_id
    client.delete_run(run_id)
    return winner


def _sweep_run_named(record: Path, uri: str) -> Optional[str]:
    """The sweep's run id its folder names for the server `uri`, or None."""
    try:
        named = cast(SweepRun, json.loads(record.read_text()))
    except (OSError, ValueError):
        return None
    return (named["run_id"] if isinstance(named, dict) and named.get("tracking_uri") == uri and named.get("run_id")
            else None)


def _run_tagged(client: MlflowClient, experiment_id: str, folder: Path) -> Optional[str]:
    """The id of the MLflow run tagged with `folder`, or None."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{FOLDER_TAG}` = '{quoted(str(folder.resolve()))}'",
                              max_results=1)
    return runs[0].info.run_id if runs else None


def _sweep_of(folder: Path) -> Optional[Path]:
    """The sweep folder of a trial (run.json names one: `sweep`): the folder holding the trial's, when it is a sweep
    folder, else None. The path run.json holds is not followed (a folder is data: nothing it names is written)."""
    sweep = read_run_info(Experiment(folder)).get("sweep")
    parent = folder.resolve().parent
    return parent if isinstance(sweep, str) and sweep and (parent / SWEEP_SPEC_NAME).is_file() else None


def _end_sweep_run(client: MlflowClient, run_id: str) -> None:
    """After a trial's end: the sweep's run holds the best of its trials' `best_value` (lower or higher is better as
    each trial's `monitor_mode` tag says) and, once none of its trials runs, stands KILLED while one was stopped
    (an interrupted sweep, which a resume continues), else FINISHED. Trials ending at once (two workers) each set
    the status from what they read: each reads again after its write, and writes again while that changed."""
    run = client.get_run(run_id)
    parent = run.data.tags.get(PARENT_TAG)
    if not parent:
        return

    def children() -> list[Any]:
        return list(client.search_runs([run.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent}'",
                                       max_results=10000))

    read = children()
    values = [child.data.metrics["best_value"] for child in read if "best_value" in child.data.metrics]
    if values:
        maximized = run.data.tags.get("monitor_mode") == "max"
        client.log_metric(parent, f"best_{run.data.tags.get('monitor', 'value')}",
                          max(values) if maximized else min(values), step=len(values))
    for _ in range(10):
        statuses = {child.info.status for child in read}
        client.update_run(parent, status="RUNNING" if "RUNNING" in statuses else "KILLED" if "KILLED" in statuses
                          else "FINISHED")
        again = children()
        if (sorted((child.info.run_id, child.info.status) for child in again)
                == sorted((child.info.run_id, child.info.status) for child in read)):
            return
        read = again


def _send(client: MlflowClient, state: SentState, group: list[OutboxEntry], outbox: Outbox) -> None:
    """One group of `_groups`: epochs' metrics in one `log_batch`, or one other entry."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    entry, run_id, folder = group[0], state["run_id"], outbox.folder
    kind = entry.get("kind")
    if kind == "start":
        params = [Param(key, value[:PARAM_LENGTH]) for key, value in entry.get("params", {}).items()]
        for first in range(0, len(params), BATCH_PARAMS):
            client.log_batch(run_id, params=params[first:first + BATCH_PARAMS])
    elif kind == "metrics":
        metrics = [Metric(key, value, epoch["at"], epoch.get("step", 0))
                   for epoch in group for key, value in epoch.get("metrics", {}).items()]
        for first in range(0, len(metrics), BATCH_METRICS):  # (one epoch of more than 1000 metrics)
            client.log_batch(run_id, metrics=metrics[first:first + BATCH_METRICS])
    elif kind == "version":
        send_version(client, state, entry, folder, outbox.entries())
    elif kind == "attempt":
        client.log_batch(run_id, tags=[RunTag(key, value) for key, value in entry.get("tags", {}).items()])
        client.update_run(run_id, status="RUNNING")
        parent = client.get_run(run_id).data.tags.get(PARENT_TAG)
        if parent:  # a trial continued: its sweep runs again
            client.update_run(parent, status="RUNNING")
    elif kind == "end":
        try:
            for name in entry.get("files", []):
                path = folder / name
                if path.is_file():
                    client.log_artifact(run_id, str(path))
            if entry.get("metrics"):
                client.log_batch(run_id, metrics=[Metric(key, value, entry["at"], entry.get("step", 0))
                                                  for key, value in entry.get("metrics", {}).items()],
                                 tags=[RunTag(key, value) for key, value in entry.get("tags", {}).items()])
        except MlflowException as error:  # refused: the run's status is still what the end says
            if error.error_code not in REFUSALS:
                raise
            _LOG.warning("MLflow: %s refused the files or summary of %s (%s): left out", client.tracking_uri,
                         folder, one_line(error))
        client.set_terminated(run_id, status=entry.get("status", "FINISHED"), end_time=entry.get("at"))
        _end_sweep_run(client, run_id)


def one_line(error: BaseException, characters: int = 400) -> str:
    """The error as one line: its type and its text's lines joined; a longer one keeps its start and its end, where
    requests and urllib3 put the cause ("... (Caused by SSLError(...CERTIFICATE_VERIFY_FAILED...))")."""
    text = " ".join(line.strip() for line in str(error).strip().splitlines() if line.strip())
    if len(text) > characters:
        text = f"{text[:characters // 3]} ... {text[-(characters - characters // 3):]}"
    return f"{type(error).__name__}: {text}"


def report_lines(info: Mapping[str, Any], folder: PathLike) -> list[str]:
    """The closing report's line of a run logged to MLflow (`info`: its run.json): its page, with the records its
    outbox still holds and the command that sends them; none for a run not logged."""
    tracking = info.get("mlflow")
    if not tracking:
        return []
    page = run_url(tracking["tracking_uri"], tracking) if tracking.get("run_id") else None
    left = len(Outbox(folder).pending())
    command = f"{command_name()} mlflow sync {folder}"
    if page is None:
        return [f"MLflow run:        not sent yet: {command}"]
    return [f"MLflow run:        {page}" + (f" ({left} record(s) not sent yet: {command})" if left else "")]


def run_url(uri: str, state: Mapping[str, Any]) -> Optional[str]:
    """The run's page in the MLflow UI, for an http(s) server that has it (`state`: a `SentState`, or run.json's
    `mlflow`); else None."""
    if not uri.startswith("http") or "run_id" not in state:
        return None
    return f"{uri.rstrip('/')}/#/experiments/{state.get('experiment_id')}/runs/{state['run_id']}"
