"""One trial: run as an experiment in the worker's warm trial host (`run_trial`), scored from its run.json; what a
sweep's workers (`worker.py`) train each trial with."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

from experiments_manager.utils.errors import ERROR_PREFIX, EXIT_TEMPFAIL, UserInputError
from experiments_manager.utils.lease import LEASE_NAME, LeaseHeld
from experiments_manager.utils.lease_holder import LeaseWatch, lease_timeout, live_holder, read_holder
from experiments_manager.run.endings import failed
from experiments_manager.run.experiment import Experiment, running_command
from experiments_manager.run.lifecycle import attempt, record_ending
from experiments_manager.run.record import Status
from experiments_manager.run.names import now
from experiments_manager.settings.monitor import monitor_mode
from experiments_manager.run.log import attempt_header
from experiments_manager.utils.signals import STOP_SIGNALS as RUN_STOP_SIGNALS
from experiments_manager.sweeps.journal import TrialRecord
from experiments_manager.utils.signals import process_alive
from experiments_manager.sweeps.trial_host import TrialHost
from experiments_manager.sweeps.trial_training import TrialRequest
from experiments_manager.tracking.session import send_recorded_end

_LOG = logging.getLogger(__name__)

if TYPE_CHECKING:
    from experiments_manager.run.record import RunRecord
    from experiments_manager.sweeps.journal import RecordJSON
    from experiments_manager.utils.atomic import PathLike

STOP_SIGNALS = RUN_STOP_SIGNALS + (signal.SIGHUP,)  # and a closed terminal
TrialResult = dict[str, Any]  # hyperopt's result dict of a trial: status, loss, trial_status, experiment, reason...


def run_trial(record: TrialRecord, settings_path: str, hparams: dict[str, Any], host: TrialHost,
              stop: Optional[threading.Event] = None, watch: Optional[LeaseWatch] = None,
              epochs: Optional[int] = None) -> TrialResult:
    """Trains one trial in the worker's warm host (`trial_host`): a new experiment from `settings_path` with
    `hparams`, or the record's experiment continued from its checkpoint; returns hyperopt's result dict and writes
    how it ended into the record.

    Args:
        record: the trial's `TrialRecord` (claimed by this process).
        settings_path: the settings file a new experiment trains from.
        hparams: the trial's hparam overrides (fixed and sampled).
        host: the worker's `TrialHost` (started here if it is not running).
        stop: set when the worker is stopping: a trial still waiting for its previous writer does not start
            (default None).
        watch: the worker's `LeaseWatch` (default: a new one): what it has seen of the trial's previous writer
            on another node, handed down to the host for this trial, so that a gone writer is watched once.
        epochs: train to this many epochs in all (a scheduler's rung: a new experiment trains them, a paused one
            is extended to them from its checkpoint); default None: the settings' `nbEpoch`.

    Raises:
        LeaseLost: the claim was lost meanwhile (this worker stalled past the timeout): the record is not written.
    """
    before, watch = record.read(), watch or LeaseWatch()
    _wait_for_writer_gone(before.get("pid"), before.get("experiment"), stop, watch)  # a stopped or orphaned trial
    info = record.read()                                                              # may still be checkpointing
    if stop is not None and stop.is_set():
        return {"status": "fail", "trial_status": Status.INTERRUPTED.value, "signum": signal.SIGTERM,
                "experiment": info.get("experiment"), "reason": "the worker stopped before it started"}
    resume = _resumable(info)
    request = TrialRequest(record=str(record.path), log=str(record.log_path), epochs=epochs,
                           environment=_handed_down(watch, info.get("experiment")),
                           **({"resume": resume} if resume else {"settings": settings_path, "hparams": hparams}))
    started = time.monotonic()
    with open(record.log_path, "a") as log:
        worker = info.get("worker") or {}
        log.write(attempt_header(("continuing " + resume if resume else "a new experiment")
                                 + (f" to {epochs} epochs" if epochs is not None else "")
                                 + (f" (worker pid {worker.get('pid')} on {worker.get('host')})" if worker else "")))
    log_start = record.log_path.stat().st_size
    process = host.start()
    record.update(status=Status.RUNNING.value, pid=process.pid, started=now(), log=str(record.log_path),
                  resumed=bool(resume))
    code = host.run(request)
    result = _result_of(record.read(), code, record.log_path, log_start)
    if result["trial_status"] == Status.FAILED:
        _end_if_running(result.get("experiment"), result["reason"])
    result.update(seconds=round((info.get("seconds") or 0.0) + time.monotonic() - started, 3),  # every attempt's
                  log=str(record.log_path))
    record.update(status=result["trial_status"], ended=now(), exit_code=code, reason=result.get("reason"),
                  best_value=result.get("best_value"), best_epoch=result.get("best_epoch"), pid=None,
                  seconds=result["seconds"], loss=result.get("loss"), epochs_trained=result.get("epochs_trained"))
    return result


def known_result(info: RecordJSON, sampled: dict[str, Any]) -> Optional[TrialResult]:
    """The result of a trial that already ended (a sweep stopped before hyperopt saved it): not trained twice."""
    if info.get("status") == Status.FAILED:
        return {"status": "fail", "trial_status": Status.FAILED.value, "reason": info.get("reason"), "hparams": sampled,
                "experiment": info.get("experiment"), "seconds": info.get("seconds"), "log": info.get("log")}
    if info.get("status") == Status.FINISHED:
        result = _result_of(info, 0, info.get("log"))
        result.update(hparams=sampled, seconds=info.get("seconds"), log=info.get("log"))
        return result
    return None


def _resumable(info: RecordJSON) -> Optional[str]:
    """The experiment of a trial that was stopped before it finished, if there is one to continue."""
    experiment: Optional[str] = info.get("experiment")
    if not experiment or not Experiment(experiment).run_file.is_file():
        return None
    return experiment


def _result_of(info: RecordJSON, exit_code: int, log_path: Optional[PathLike], log_start: int = 0) -> TrialResult:
    """hyperopt's result from the trial's run.json (or from its log from `log_start` on, when no experiment was
    created)."""
    run = _run_info(info.get("experiment"))
    result = _scored(info, run, exit_code, log_path, log_start)
    if run.get("epochs_completed") is not None:
        result["epochs_trained"] = run["epochs_completed"]
    return result


def _scored(info: RecordJSON, run: RunRecord, exit_code: int, log_path: Optional[PathLike],
            log_start: int) -> TrialResult:
    experiment = info.get("experiment")
    status = run.get("status")
    signum = _stop_signal(exit_code)
    if (status == Status.INTERRUPTED or (signum is not None and status != Status.FINISHED)
            or (exit_code == EXIT_TEMPFAIL and status not in (Status.FINISHED, Status.FAILED))):
        reason = (f"stopped by {signal.Signals(signum).name}" if signum is not None else
                  _last_error(log_path, log_start) or run.get("reason") or f"exit code {exit_code}")
        return {"status": "fail", "trial_status": Status.INTERRUPTED.value, "signum": signum,
                "experiment": experiment, "reason": reason}
    if status == Status.FINISHED and run.get("best_value") is not None:
        best = float(cast(float, run["best_value"]))  # (not None: just checked)
        maximized = monitor_mode(run.get("monitored_loss_name", ""), run.get("monitor_mode")) == "max"
        return {"status": "ok", "trial_status": Status.FINISHED.value, "loss": -best if maximized else best,  # hyperopt minimises
                "best_value": best, "best_epoch": run.get("best_epoch"), "experiment": experiment}
    if status == Status.FINISHED:
        reason = f"no {run.get('monitored_loss_name', 'monitored')} value recorded"
    elif status == Status.FAILED:
        reason = run.get("error") or Status.FAILED.value
    elif exit_code < 0:
        reason = f"killed by {signal.Signals(-exit_code).name}" + (" (out of memory?)" if -exit_code == 9 else "")
    else:
        reason = info.get("reason") or _last_error(log_path, log_start) or f"exit code {exit_code}"
    return {"status": "fail", "trial_status": Status.FAILED.value, "reason": reason, "experiment": experiment}


def _end_if_running(experiment: Optional[str], reason: str) -> None:
    """A trial process that died without recording its end (killed, crashed): its run.json (and TensorBoard's
    HParams status) say `failed` too, not `running` for ever; written as the experiment's one writer (a process of
    the trial that still holds it records its own end)."""
    if not experiment or _run_info(experiment).get("status") != Status.RUNNING:
        return
    trial = Experiment(experiment)
    try:
        with attempt(trial, running_command(), console=False, records_ending=False):
            record_ending(trial, failed(reason), only_if_running=True)
            send_recorded_end(trial)  # its MLflow run, if any, ends too
    except LeaseHeld as held:
        _LOG.info("%s", held)


def _wait_for_writer_gone(pid: Optional[int], experiment: Optional[str], stop: Optional[threading.Event],
                          watch: LeaseWatch) -> None:
    """Waits until a trial's last writer is gone: its process on this host, and any live holder of its
    experiment's lease (an orphaned trial process checkpointing, on this node or another: gone once `watch` saw
    its heartbeat stand still for the timeout), for up to the lease timeout and a fifth, or until `stop` is set; a
    holder still alive then refuses the resume itself (exit 75)."""
    deadline = time.monotonic() + lease_timeout() * 1.2
    lease = Path(experiment) / LEASE_NAME if experiment else None
    while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        if not (pid and process_alive(pid)) and (lease is None or live_holder(lease, watch=watch) is None):
            return
        time.sleep(0.2)


def _handed_down(watch: LeaseWatch, experiment: Optional[str]) -> dict[str, str]:
    """What `watch` saw of the experiment's gone writer, as environment variables for the trial (in its host)."""
    holder = read_holder(Path(experiment) / LEASE_NAME) if experiment else None
    return watch.handed_down(holder) if holder is not None else {}


def _run_info(experiment: Optional[str]) -> RunRecord:
    """The trial experiment's run.json, or {} when it has none (yet) or it cannot be read."""
    if not experiment:
        return {}
    try:
        return Experiment(experiment).run_info()
    except UserInputError:
        return {}


def _stop_signal(exit_code: int) -> Optional[int]:
    """The stop signal a trial ended on: killed by it (< 0) or checkpointed after it (128 + signal)."""
    for signum in STOP_SIGNALS:
        if exit_code in (-signum, 128 + signum):
            return signum
    return None


def _last_error(log_path: Optional[PathLike], start: int = 0) -> Optional[str]:
    """The `error:` lines a trial process printed in its log after byte `start` (its own attempt), else its
    last line."""
    try:
        with open(cast("PathLike", log_path), "rb") as handle:  # (None: the TypeError below)
            handle.seek(start)
            lines = handle.read().decode(errors="replace").splitlines()
    except (OSError, TypeError):
        return None
    errors = [line[len(ERROR_PREFIX):] for line in lines if line.startswith(ERROR_PREFIX)]
    if errors:
        return "; ".join(errors)
    tail = [line for line in lines if line.strip()]
    return tail[-1].strip() if tail else None
