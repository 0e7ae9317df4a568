"""How an attempt ended, as a status and an exit code: the one table every command that writes a run reads.

| how it ended | status | exit code |
|---|---|---|
| trained to its end | finished | 0 |
| a signal (Ctrl-C, `scancel`, preemption) | interrupted | 128 + the signal (130, 143) |
| the machine or the data failed it (full disk, EIO, stalled input, a lost node) | interrupted | 75 |
| bad input (a settings file, a folder, the command line) | failed | 2 |
| the code failed, the loss became NaN | failed | 1 |
| Flower stopped the federation's run (`flwr stop`) | interrupted | 1 |
| its lease was lost (another writer has the folder now) | nothing is written | 75 |

`ending_of(error)` reads the table for the error that ended an attempt; the constructors (`finished`,
`signalled`, ...) for an ending the code decides itself; `recorded(info)` reads back the one run.json holds.
`lifecycle.record_ending` records an ending in run.json (through `record_writer.RunRecordWriter.end`), the one
place that does. This module does not import TensorFlow.

Example:

```python
ending = ending_of(error)        # None: the lease was lost, write nothing
if ending is not None:
    record_ending(experiment, ending)
sys.exit(ending.exit_code)
```
"""

from __future__ import annotations

import dataclasses
import enum
import signal
import traceback as traceback_module
from typing import Optional

from experiments_manager.run.record import RunRecord, Status
from experiments_manager.utils.environment_failures import environment_failure_line
from experiments_manager.utils.errors import (EXIT_TEMPFAIL, EXIT_USER_ERROR, SIGNAL_EXIT_BASE, InputStalled,
                                              UserInputError)
from experiments_manager.utils.lease import LeaseLost


class EndingKind(enum.Enum):
    """The table's rows: (status, exit code) of each way an attempt ends (a signal's code adds its number)."""

    FINISHED = (Status.FINISHED, 0)
    SIGNALLED = (Status.INTERRUPTED, SIGNAL_EXIT_BASE)
    ENVIRONMENT = (Status.INTERRUPTED, EXIT_TEMPFAIL)
    BAD_INPUT = (Status.FAILED, EXIT_USER_ERROR)
    FAILURE = (Status.FAILED, 1)
    FLOWER_STOPPED = (Status.INTERRUPTED, 1)

    @property
    def status(self) -> Status:
        return self.value[0]


@dataclasses.dataclass(frozen=True)
class Ending:
    """How one attempt ended.

    Args:
        kind: its row of the table (`EndingKind`).
        exit_code: the process' exit code (the row's, or 128 + a signal's number).
        reason: why an interrupted attempt stopped (default None).
        error: a failed attempt's line (default None).
        traceback: a crash's traceback lines, the user's frames first (default None: none recorded).
    """

    kind: EndingKind
    exit_code: int
    reason: Optional[str] = None
    error: Optional[str] = None
    traceback: Optional[list[str]] = None

    @property
    def status(self) -> Status:
        return self.kind.status


def finished() -> Ending:
    """Trained to its end."""
    return Ending(EndingKind.FINISHED, 0)


def signalled(signum: int, reason: str) -> Ending:
    """Stopped by signal `signum` (its checkpoint written when it reached one): 128 + `signum`."""
    return Ending(EndingKind.SIGNALLED, SIGNAL_EXIT_BASE + int(signum), reason=reason)


def environment_failure(reason: str) -> Ending:
    """The machine or the data stopped it (a full disk, stalled input, a lost node): resumable once mended."""
    return Ending(EndingKind.ENVIRONMENT, EXIT_TEMPFAIL, reason=reason)


def bad_input(error: str) -> Ending:
    """The user's input was wrong (one line naming it)."""
    return Ending(EndingKind.BAD_INPUT, EXIT_USER_ERROR, error=error)


def failed(error: str, traceback: Optional[list[str]] = None) -> Ending:
    """The code failed, or the loss became NaN (`error`: one line)."""
    return Ending(EndingKind.FAILURE, 1, error=error, traceback=traceback)


def flower_stopped(reason: str) -> Ending:
    """Flower ended the federation's ServerApp (its run was stopped with `flwr stop`)."""
    return Ending(EndingKind.FLOWER_STOPPED, 1, reason=reason)


def ending_of(error: BaseException) -> Optional[Ending]:
    """The table's ending for the error that ended an attempt; None for a lost lease (nothing may be written).

    Example:

    ```python
    ending_of(KeyboardInterrupt())          # interrupted, 130
    ending_of(UserInputError("s.py: x"))    # failed, 2, error 's.py: x'
    ```
    """
    if isinstance(error, LeaseLost):
        return None
    if isinstance(error, KeyboardInterrupt):
        return signalled(signal.SIGINT, "Ctrl-C (SIGINT) stopped it at once")
    signum = getattr(error, "signum", None)  # callbacks.TrainingInterrupted (a signal seen at a step's end)
    if isinstance(signum, int):
        return signalled(signum, str(error))
    if isinstance(error, InputStalled):
        return environment_failure(str(error))
    if isinstance(error, UserInputError):
        line = "; ".join(error.problems)
        if getattr(error, "exit_code", EXIT_USER_ERROR) == EXIT_TEMPFAIL:  # the lease of another writer, a disk
            return environment_failure(line)
        return bad_input(line)
    machine = environment_failure_line(error)
    if machine is not None:
        return environment_failure(machine)
    return failed(f"{type(error).__name__}: {error}", traceback_module.format_exception(error))


def recorded(info: RunRecord) -> Ending:
    """The ending run.json records of its latest attempt (a process that ran the attempt elsewhere: a simulated
    federation's server); a record still running reads as a failure without a line."""
    attempts = info.get("attempts") or [{}]
    code = info.get("exit_code", attempts[-1].get("exit_code"))
    status = info.get("status")
    if status == Status.FINISHED:
        return finished()
    if status == Status.INTERRUPTED:
        code = int(code or 1)
        kind = (EndingKind.ENVIRONMENT if code == EXIT_TEMPFAIL else EndingKind.SIGNALLED if code > SIGNAL_EXIT_BASE
                else EndingKind.FLOWER_STOPPED)
        return Ending(kind, code, reason=info.get("reason"))
    code = int(code or 1)
    return Ending(EndingKind.BAD_INPUT if code == EXIT_USER_ERROR else EndingKind.FAILURE, code,
                  error=info.get("error") or f"run.json says {status}")

