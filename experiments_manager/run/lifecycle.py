"""A run's life in one place: every command that writes a run enters `attempt`.

Within `attempt(experiment, command)` the process is the experiment's one writer (its lease taken, `utils/lease.py`),
its console is copied to the folder's train.log (`log.py`), and on the way out an ending nobody recorded is recorded
from the one table (`endings.py`): an error leaving the block is mapped to its status and exit code (a lost lease
writes nothing). The commands that enter it:

| command | what it does inside |
|---|---|
| `train` (`training/entry_points.train`), a sweep's trial | `new_run`: a new folder, then the trainer |
| `train --resume`, a requeue, an extension | `resumed` (a new attempt), the trainer |
| a federation's server (`federated/apps.run_federation`) and each client folder (`federated_client`) | rounds |
| `evaluate`, `export`, `check --repair`, a trial's end recorded late | `records_ending=False`: no status changes |

Every ending is recorded here, through `record_ending` (the one call of `Experiment.record.end`; a test says so):
the trainer's (finished, NaN, a signal after its checkpoint, its own code's error), a federation's server and
clients', a trial whose end its process could not record, and on the way out of `attempt` an error's that nobody
recorded (from the one table, `endings.py`). This module does not import TensorFlow.

Example:

```python
with new_run(settings, command) as experiment:       # train
    Trainer(experiment, settings).run()

with attempt(experiment, command):                   # train --resume
    resumed(experiment, command)
    Trainer(experiment, settings, resuming=True).run()
```
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence

from experiments_manager.run.endings import ending_of
from experiments_manager.run.log import console_copied
from experiments_manager.run.space_reserve import kept_for_the_ending

if TYPE_CHECKING:
    from experiments_manager.run.endings import Ending
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.record import RunRecord
    from experiments_manager.run.reservation import FolderReservation
    from experiments_manager.utils.atomic import PathLike
    from experiments_manager.utils.lease import Lease

_LOG = logging.getLogger(__name__)


@contextlib.contextmanager
def attempt(experiment: Experiment, command: Sequence[str], console: bool = True,
            records_ending: bool = True) -> Iterator[Lease]:
    """Within the block this process writes `experiment` alone, as `command`.

    Args:
        experiment: the run's `Experiment` (created, or opened to resume).
        command: this process' command line (run.json, the lease, train.log's header).
        console: copy the console to the folder's train.log (default True; a federated client's folder, a tool's
            visit: False).
        records_ending: record the ending of an error leaving the block when nothing recorded one, in the space
            kept for it on the run's disk (`space_reserve`) when that is full (default True; False for commands that
            do not change how the run stands: evaluate, export, check).

    Raises:
        LeaseHeld: another live writer holds the folder (one line naming it; exit code 75); nothing is written.
        UserInputError: the folder holds a symbolic link (`utils/links.py`: nothing is written through one); nothing
            is written.
    """
    experiment.refuse_links()
    with experiment.held(command) as lease:
        copied = console_copied(experiment.root, command, lease.fenced) if console else contextlib.nullcontext()
        reserved = kept_for_the_ending(experiment.root, lease.fenced) if records_ending else contextlib.nullcontext()
        with copied, reserved:
            try:
                yield lease
            except BaseException as error:
                if records_ending and experiment.record.ending is None:
                    _record_ending(experiment, error)
                raise


@contextlib.contextmanager
def new_run(settings: Any, command: Sequence[str], parent: Optional[PathLike] = None,
            reservation: Optional[FolderReservation] = None) -> Iterator[Experiment]:
    """A new run's first attempt: its folder created (`Experiment.create`, whose Args these are), then `attempt`.

    Example:

    ```python
    with new_run(settings, command) as experiment:
        Trainer(experiment, settings).run()
    ```
    """
    from experiments_manager.run.experiment import Experiment

    experiment = Experiment.create(settings, command, parent=parent, reservation=reservation)
    # a new folder: nobody else writes it, but a `train --resume` of it may start
    with attempt(experiment, command):
        yield experiment


def record_ending(experiment: Experiment, ending: Ending, stopped_early: Optional[bool] = None,
                  only_if_running: bool = False) -> Optional[RunRecord]:
    """Records how the attempt ended in run.json (`RunRecordWriter.end`): the one place an ending is written.

    Args:
        experiment: the run, its lease held by this process.
        ending: the `endings.Ending` (from the table, or a constructor for an ending the caller decided).
        stopped_early: a finished run's: whether early stopping ended it (default None: not recorded).
        only_if_running: record it only while run.json still says running (default False): the ending of a process
            that could not record its own (killed, crashed, on another host).

    Returns:
        run.json as written, or None when `only_if_running` and the run had ended.

    Example:

    ```python
    with attempt(experiment, command):
        record_ending(experiment, endings.finished(), stopped_early=False)
    ```
    """
    if only_if_running:
        return experiment.record.end_if_running(ending)
    return experiment.record.end(ending, stopped_early=stopped_early)


def _record_ending(experiment: Experiment, error: BaseException) -> None:
    """The table's ending of `error`, when the disk still takes it (a failing disk's error stands as it is)."""
    ending = ending_of(error)
    if ending is None:  # the lease was lost: another writer has the folder
        return
    try:
        record_ending(experiment, ending)
    except Exception as again:  # noqa: BLE001 - the error ending the run is what the user sees
        _LOG.debug("%s: the ending could not be recorded (%s)", experiment.root, again)


def resumed(experiment: Experiment, command: Sequence[str], accepted_code_change: Iterable[str] = (),
            epochs: Optional[int] = None, extended_from: Optional[int] = None) -> RunRecord:
    """Inside `attempt`: `command` continues the run. What writers killed mid-write left is removed, TensorBoard's
    status of the last attempt cleared, and a new attempt recorded (`RunRecordWriter.begin_attempt`, whose Args
    these are)."""
    from experiments_manager.run.hparams_status import clear_status

    experiment.remove_leftovers()
    clear_status(experiment.logs_dir)
    return experiment.record.begin_attempt(command, accepted_code_change, epochs=epochs, extended_from=extended_from)
