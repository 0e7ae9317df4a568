"""How a trial and a sweep end, in one place: a trial's run (its run.json and its process' exit code) -> the trial's
state, and the sweep's state as a worker process leaves it -> that process' exit code.

A trial's state from how its run ended (first matching row):

| the trial's run | its exit code | the trial |
|---|---|---|
| `interrupted` | any | INTERRUPTED (continues from its checkpoint) |
| not `finished` | stopped by a stop signal (-15, 143, 138, 130...) | INTERRUPTED |
| neither `finished` nor `failed` | 75 (the machine: a full disk, a writer elsewhere) | INTERRUPTED |
| `finished`, its monitored value recorded | any | FINISHED |
| `finished`, no value | any | FAILED: "no <monitor> value recorded" |
| `failed` | any | FAILED: the run's error |
| anything else | killed by a signal (< 0) | FAILED: "killed by SIGKILL (out of memory?)" |
| anything else | any | FAILED: the error lines of its log, else its exit code |

A worker process' exit code from the sweep's state as it leaves:

| the sweep | this process | exit code |
|---|---|---|
| finished | any | 0 |
| failed (every trial failed) | any | 1 |
| running (other workers hold trials) | neither stopped nor told to try again | 0 |
| running or interrupted | stopped by a signal | 128 + signal |
| running or interrupted | otherwise | 75 (try again later: a requeued job resumes it) |

Example:

```python
trial_state_of(Status.FINISHED, has_value=True, exit_code=0)          # (TrialState.FINISHED, None)
sweep_exit_code(Status.INTERRUPTED, stop_signum=15)                  # 143
```
"""

from __future__ import annotations

import signal
from typing import Optional

from experiments_manager.run.record import Status
from experiments_manager.sweeps.trial_state import TrialState
from experiments_manager.utils.errors import EXIT_TEMPFAIL
from experiments_manager.utils.signals import STOP_SIGNALS as RUN_STOP_SIGNALS

TRIAL_STOP_SIGNALS = RUN_STOP_SIGNALS + (signal.SIGHUP,)  # what stops a trial: a run's and a closed terminal
# why a trial failed, when its run says nothing itself: filled in by `trial_state_of`'s caller
NO_VALUE, RUN_ERROR, KILLED, LOG_ERROR = "no value", "run error", "killed", "log error"


def stop_signal_of(exit_code: int) -> Optional[int]:
    """The stop signal a trial ended on: killed by it (< 0) or checkpointed after it (128 + signal); else None."""
    for signum in TRIAL_STOP_SIGNALS:
        if exit_code in (-signum, 128 + signum):
            return signum
    return None


def trial_state_of(run_status: object, has_value: bool, exit_code: int) -> tuple[TrialState, Optional[str]]:
    """(the trial's state, why it failed: `NO_VALUE`, `RUN_ERROR`, `KILLED` or `LOG_ERROR`; None unless FAILED)
    from its run's status (run.json; None when it has none) and its process' exit code: the table above.

    Args:
        run_status: the trial's run.json `status` (a `Status`, its word, or None).
        has_value: run.json records a best value of the monitored quantity.
        exit_code: what the trial's process exited with (negative: killed by that signal).
    """
    stopped = stop_signal_of(exit_code) is not None
    if (run_status == Status.INTERRUPTED or (stopped and run_status != Status.FINISHED)
            or (exit_code == EXIT_TEMPFAIL and run_status not in (Status.FINISHED, Status.FAILED))):
        return TrialState.INTERRUPTED, None
    if run_status == Status.FINISHED:
        return (TrialState.FINISHED, None) if has_value else (TrialState.FAILED, NO_VALUE)
    if run_status == Status.FAILED:
        return TrialState.FAILED, RUN_ERROR
    return TrialState.FAILED, KILLED if exit_code < 0 else LOG_ERROR


def sweep_exit_code(status: object, stop_signum: Optional[int] = None, tempfail: bool = False) -> int:
    """A worker process' exit code from the sweep's status as it leaves (the table above).

    Args:
        status: the sweep's status (`Status` or its word).
        stop_signum: the signal that stopped this process, or None.
        tempfail: a trial of this process must be tried again later.
    """
    if status == Status.FINISHED:
        return 0
    if status == Status.FAILED:
        return 1
    if status == Status.RUNNING and not (stop_signum or tempfail):
        return 0
    return 128 + stop_signum if stop_signum else EXIT_TEMPFAIL


def signal_name(signum: int) -> str:
    """'SIGTERM' for 15."""
    return signal.Signals(signum).name
