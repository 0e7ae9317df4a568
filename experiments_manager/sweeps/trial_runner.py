"""One trial run in the worker's warm trial host (`run_trial`) and scored from its run.json (`scored`): its
`TrialOutcome`, the state the outcome table gives (`outcomes.py`), written into its record; what a sweep's worker
loops (`worker_loops.py`) train each trial with.

Example:

```python
outcome = run_trial(record, ScriptSource.of("settings.py", None), {"learningRate": 0.01}, host, epochs=3)
outcome.state, outcome.loss        # (TrialState.PAUSED..., 0.12): the record says the same
```
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

from experiments_manager.run.endings import failed
from experiments_manager.run.experiment import Experiment, running_command
from experiments_manager.run.lifecycle import attempt, record_ending
from experiments_manager.run.log import attempt_header
from experiments_manager.run.names import now
from experiments_manager.run.record import Status
from experiments_manager.settings.monitor import monitor_mode
from experiments_manager.sweeps.journal import TrialRecord
from experiments_manager.sweeps.outcomes import KILLED, LOG_ERROR, NO_VALUE, signal_name, stop_signal_of, trial_state_of
from experiments_manager.sweeps.trial_host import TrialHost
from experiments_manager.sweeps.trial_state import TrialState
from experiments_manager.sweeps.trial_training import TrialRequest
from experiments_manager.tracking.session import send_recorded_end
from experiments_manager.utils.errors import ERROR_PREFIX, UserInputError
from experiments_manager.utils.lease import LEASE_NAME, LeaseHeld
from experiments_manager.utils.lease_holder import LeaseWatch, lease_timeout, live_holder, read_holder
from experiments_manager.utils.signals import process_alive

_LOG = logging.getLogger(__name__)

if TYPE_CHECKING:
    from experiments_manager.run.record import RunRecord
    from experiments_manager.settings.script import ScriptSource
    from experiments_manager.sweeps.journal import RecordJSON
    from experiments_manager.utils.atomic import PathLike


@dataclasses.dataclass
class TrialOutcome:
    """How one attempt at a trial ended: what its record holds of it.

    Attributes:
        state: the trial's `TrialState` (the outcome table's: FINISHED, FAILED or INTERRUPTED; a scheduler's
            trial that reached its rung becomes PAUSED as its value there is recorded).
        experiment: the trial's experiment folder, or None (none was made).
        reason: why it failed or was interrupted, or None.
        signum: the stop signal that interrupted it, or None.
        loss: what hyperopt minimises (the best value, negated when the monitored value is maximised), or None.
        best_value, best_epoch: its run's best monitored value and its epoch, or None.
        epochs_trained: the epochs its experiment has trained, or None.
        seconds: every attempt's seconds so far, or None.

    Example:

    ```python
    outcome = run_trial(record, settings, hparams, host, epochs=3)
    if outcome.state is TrialState.FAILED:
        print(outcome.reason)
    ```
    """

    state: TrialState
    experiment: Optional[str] = None
    reason: Optional[str] = None
    signum: Optional[int] = None
    loss: Optional[float] = None
    best_value: Optional[float] = None
    best_epoch: Optional[int] = None
    epochs_trained: Optional[int] = None
    seconds: Optional[float] = None


def run_trial(record: TrialRecord, settings: ScriptSource, hparams: dict[str, Any], host: TrialHost,
              stop: Optional[threading.Event] = None, watch: Optional[LeaseWatch] = None,
              epochs: Optional[int] = None, trust_code: bool = False) -> TrialOutcome:
    """Trains one trial in the worker's warm host (`trial_host`): a new experiment from `settings` with
    `hparams`, or the record's experiment continued from its checkpoint; returns its `TrialOutcome` and writes it
    into the record.

    Args:
        record: the trial's `TrialRecord` (claimed by this process).
        settings: the settings file a new experiment trains from, and the user's file its code sees as
            `__file__` (`ScriptSource`: a resumed sweep's copy runs as the user's file).
        hparams: the trial's hparam overrides (fixed and sampled).
        host: the worker's `TrialHost` (started here if it is not running).
        stop: set when the worker is stopping: a trial still waiting for its previous writer does not start
            (default None).
        watch: the worker's `LeaseWatch` (default: a new one): what it has seen of the trial's previous writer
            on another node, handed down to the host for this trial, so that a gone writer is watched once.
        epochs: train to this many epochs in all (a scheduler's rung: a new experiment trains them, a paused one
            is extended to them from its checkpoint); default None: the settings' `nbEpoch`.
        trust_code: a resumed experiment runs its copies although another user owns them (the sweep was given
            `--trust-code`; default False: its owner is checked, `utils/code_trust.py`).

    Raises:
        LeaseLost: the claim was lost meanwhile (this worker stalled past the timeout): the record is not written.
    """
    before, watch = record.read(), watch or LeaseWatch()
    _wait_for_writer_gone(before.get("pid"), before.get("experiment"), stop, watch)  # a stopped or orphaned trial
    info = record.read()                                                              # may still be checkpointing
    if stop is not None and stop.is_set():
        return TrialOutcome(TrialState.INTERRUPTED, info.get("experiment"), "the worker stopped before it started")
    resume = _resumable(info)
    new = {"settings": str(settings.runs), "script": str(settings.script), "hparams": hparams}
    request = TrialRequest(record=str(record.path), log=str(record.log_path), epochs=epochs, trust_code=trust_code,
                           environment=_handed_down(watch, info.get("experiment")),
                           **({"resume": resume} if resume else new))
    started = time.monotonic()
    with open(record.log_path, "a") as log:
        worker = info.get("worker") or {}
        log.write(attempt_header(("continuing " + resume if resume else "a new experiment")
                                 + (f" to {epochs} epochs" if epochs is not None else "")
                                 + (f" (worker pid {worker.get('pid')} on {worker.get('host')})" if worker else "")))
    log_start = record.log_path.stat().st_size
    process = host.start()
    record.update(status=TrialState.RUNNING, pid=process.pid, started=now(), log=str(record.log_path),
                  resumed=bool(resume))
    code = host.run(request)
    outcome = scored(record.read(), code, record.log_path, log_start)
    if outcome.state is TrialState.FAILED:
        _end_if_running(outcome.experiment, cast(str, outcome.reason))  # (a failed outcome says why)
    outcome.seconds = round((info.get("seconds") or 0.0) + time.monotonic() - started, 3)  # every attempt's
    record.update(status=outcome.state, ended=now(), exit_code=code, reason=outcome.reason,
                  best_value=outcome.best_value, best_epoch=outcome.best_epoch, pid=None, seconds=outcome.seconds,
                  loss=outcome.loss, epochs_trained=outcome.epochs_trained)
    return outcome


def _resumable(info: RecordJSON) -> Optional[str]:
    """The experiment of a trial that was stopped before it finished, if there is one to continue."""
    experiment: Optional[str] = info.get("experiment")
    if not experiment or not Experiment(experiment).run_file.is_file():
        return None
    return experiment


def scored(info: RecordJSON, exit_code: int, log_path: Optional[PathLike], log_start: int = 0) -> TrialOutcome:
    """A trial's `TrialOutcome` from its record (`info`), its experiment's run.json and its exit code (`outcomes.py`'s
    table); the reason from its log from byte `log_start` on when its run says none (no experiment was made)."""
    experiment = info.get("experiment")
    run = _run_info(experiment)
    status = run.get("status")
    state, failure = trial_state_of(status, run.get("best_value") is not None, exit_code)
    outcome = TrialOutcome(state, experiment, epochs_trained=run.get("epochs_completed"))
    signum = stop_signal_of(exit_code)
    if state is TrialState.INTERRUPTED:
        outcome.signum = signum
        outcome.reason = (f"stopped by {signal_name(signum)}" if signum is not None else
                          _last_error(log_path, log_start) or run.get("reason") or f"exit code {exit_code}")
    elif state is TrialState.FINISHED:
        best = float(cast(float, run["best_value"]))  # (recorded: the table's FINISHED)
        maximized = monitor_mode(run.get("monitored_loss_name", ""), run.get("monitor_mode")) == "max"
        outcome.loss, outcome.best_value, outcome.best_epoch = -best if maximized else best, best, run.get("best_epoch")
    elif failure == NO_VALUE:
        outcome.reason = f"no {run.get('monitored_loss_name', 'monitored')} value recorded"
    elif failure == KILLED:
        outcome.reason = f"killed by {signal_name(-exit_code)}" + (" (out of memory?)" if -exit_code == 9 else "")
    elif failure == LOG_ERROR:
        outcome.reason = info.get("reason") or _last_error(log_path, log_start) or f"exit code {exit_code}"
    else:  # the run's own error
        outcome.reason = run.get("error") or Status.FAILED.value
    return outcome


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
