"""The shared state of a sweep run by workers: its journal in the sweep folder, and nothing else.

Any number of workers (Slurm array tasks on many nodes, `sweep --workers N` on one machine, a `sweep --resume`)
join one sweep folder. Each asks for a trial, trains it, records the result, and asks again. The folder is on a
shared file system (NFS, Lustre, GPFS), where `flock` is not coherent across nodes, so:

- **The short lock** (`sweep.lock`): a `utils/lease.py` lease held for one ask or one tell (read the journal,
  suggest, write); broken only when its holder is provably gone (`LOCK_TIMEOUT_SECONDS`).
- **The records** (`trials/trial-NNNN.json`, `journal.py`): one per trial, written whole by the lock holder or by
  the worker that claims the trial; readers never see a partial file.
- **The claims** (`trials/trial-NNNN.lock`): the lease of the worker that trains the trial, with its heartbeat.
  A trial whose claim is free (it was interrupted) or provably gone (its worker was killed, its node lost, its
  Slurm job requeued) is taken over by the next worker that asks, before any new point, and continues from its
  experiment's checkpoint. A claim on another node is gone once its heartbeat stood still for the timeout while
  this worker watched (`LeaseWatch`, its own clock), its experiment's lease watched meanwhile (the trial process
  inherits that watch: one wait in all); a worker with nothing else to do keeps watching (`NothingLeft.watching`).
  A trial is never trained by two workers: its claim is one lease, its experiment its own.
- **Suggestions** are hyperopt's (TPE by default), seeded by (sweep seed, trial id) (`trials.SeededSuggestions`),
  from every finished trial, with the running ones as docs without a loss (TPE counts them as worst, so it
  suggests away from them). With one worker this is the sequential sweep's history, point for point. TPE starts
  from random points for at least 2 x workers trials (`startup_trials`).
- **The outputs** (`results.csv`, `trials.pickle`, `sweep.json`) are rewritten from the journal under the lock
  after each result, whichever worker finishes it; `loss_vs_hparams.png` after the lock is released, when the
  last one is 10 s old, and under the lock as a worker leaves (so the last one drawn has every trial).

Example:

```python
store = SweepStore(SweepFolder(root), space, SeededSuggestions("tpe", 7, startup_trials=20), 40, "val_loss")
step = store.next_trial(worker_identity())
if isinstance(step, Assignment):
    ...  # train it (objective.run_trial), then
    store.record_result(step)
```
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from experiments_manager.run.record import Status
from experiments_manager.sweeps.folder import SweepFolder
from experiments_manager.sweeps.spec_writer import SweepSpec
from experiments_manager.sweeps.journal import TrialJournal, TrialPair
from experiments_manager.sweeps.legacy import EarlierRecords
from experiments_manager.sweeps.next_trial import TrialSources, pick_next_trial
from experiments_manager.sweeps.outcomes import sweep_exit_code
from experiments_manager.sweeps.record_repair import repair_damaged
from experiments_manager.sweeps.results import (best_row, device_hours_of, plot_loss_vs_hparams, rung_row,
                                                trial_rows, write_results_csv)
from experiments_manager.sweeps.sampler import HyperoptSampler, SeededSuggestions, hyperopt_trials
from experiments_manager.sweeps.scheduler import RungSchedule, reopens
from experiments_manager.sweeps.space import SearchSpace
from experiments_manager.sweeps.steps import Assignment, NothingLeft
from experiments_manager.sweeps.trial_state import TrialState
from experiments_manager.sweeps.trials_pickle import save_trials
from experiments_manager.utils.errors import UserInputError
from experiments_manager.utils.lease import Lease
from experiments_manager.utils.lease_holder import LeaseWatch, live_holder

if TYPE_CHECKING:
    from experiments_manager.sweeps.results import Row

LOCK_NAME = "sweep.lock"
LOCK_TIMEOUT_SECONDS = 60.0  # a lock holder whose heartbeat is this old (another node) is gone
LOCK_PATIENCE_SECONDS = 900.0  # how long a worker waits for the lock before it gives up (exit 75)
PLOT_INTERVAL_SECONDS = 10.0  # loss_vs_hparams.png is redrawn at most this often (any worker), and as one leaves


class SweepStore:
    """One sweep folder's journal, shared by its workers.

    Args:
        sweep: the `SweepFolder`.
        space: the `SearchSpace`.
        algo: the `SeededSuggestions`.
        max_evals: the number of trials the sweep has in all when sweep.json cannot be read (sweep.json's
            `max_evals` is the total every worker follows: a process that joins with a larger one raises it).
        monitor: the monitored value's name (results.csv's column, the plot's axis).
        schedule: the sweep's `RungSchedule` (ASHA, Hyperband), or None (default: every trial trains `nbEpoch`).
    """

    def __init__(self, sweep: SweepFolder, space: SearchSpace, algo: SeededSuggestions, max_evals: int,
                 monitor: str, schedule: Optional[RungSchedule] = None):
        self.sweep = sweep
        self.schedule = schedule
        self.space = space
        self.algo = algo
        self.max_evals = max_evals
        self.monitor = monitor
        self.journal = TrialJournal(sweep.trials_dir.resolve())  # trial processes and records name it absolutely
        self.watch = LeaseWatch()  # the other workers' claims, as this worker has seen their heartbeats
        self.sampler = HyperoptSampler(space, algo)
        self.earlier = EarlierRecords.read(sweep.trials_dir)  # an older engine's records of points, read once

    def locked(self) -> Lease:
        """The sweep's short lock (a context manager): one ask or one tell at a time, across every node.

        Raises:
            LeaseHeld: a live process held it for `LOCK_PATIENCE_SECONDS` (a worker stopped while it held it).
        """
        return Lease.wait(self.sweep.root, LOCK_NAME, LOCK_PATIENCE_SECONDS, timeout_seconds=LOCK_TIMEOUT_SECONDS,
                          what="sweep", durable=False)

    def total(self) -> int:
        """The number of trials the sweep has in all (sweep.json's `max_evals`)."""
        try:
            return int(self.sweep.spec().get("max_evals") or self.max_evals)
        except UserInputError:  # sweep.json damaged: this worker's own
            return self.max_evals

    def next_trial(self, worker: dict[str, Any]) -> Union[Assignment, NothingLeft]:
        """Claims the next trial for `worker` (`next_trial.pick_next_trial`: one to take over, a promotion, a new
        point); `NothingLeft` when none is there. Damaged records are named, restored or set aside first.

        Args:
            worker: who asks (`worker_identity()`), recorded in the trial's record.
        """
        with self.locked():
            pairs, damaged = self.journal.scan()  # a damaged record: named in one line, restored or set aside
            pairs = self.journal.numbered() if repair_damaged(damaged, self.sweep, self.watch) else pairs
            step = pick_next_trial(pairs, TrialSources(self.journal, self.sampler, self.schedule, self.earlier),
                                   worker, self.total(), self.watch)
            if isinstance(step, Assignment):
                self._mark_running()
            return step

    def reopen_finished(self, old_max_epochs: int) -> int:
        """After the scheduler's last rung was raised from `old_max_epochs` (under the lock): the trials that
        finished there become paused (`scheduler.reopens`), so that the best of them continue. Returns how many."""
        reopened = [record.update(status=TrialState.PAUSED) for record, entry in self.journal.numbered()
                    if reopens(entry, old_max_epochs)]
        self.journal = TrialJournal(self.journal.folder)  # forget what it read of them as final
        return len(reopened)

    def record_result(self, assignment: Assignment,
                      announce: Optional[Callable[[list[Row], Optional[Row]], object]] = None
                      ) -> tuple[list[Row], Optional[Row]]:
        """Releases the trial's claim and rewrites the outputs from the journal; returns (rows, best row). The
        plot is redrawn after the lock is released, when the last one (any worker's) is `PLOT_INTERVAL_SECONDS`
        old: drawing it takes longer than the rest of a tell.

        Args:
            assignment: the trial, its record already holding its result (`trial_runner.run_trial` wrote it).
            announce: function(rows, best) called before the lock is released (default None): the trial's line
                comes before any line of what its result lets another worker do (a promotion).
        """
        with self.locked():
            told = assignment.record.entry()
            if self.schedule is not None and told is not None and told.rung_value_pending:  # its value at its rung
                assignment.record.update(**self.schedule.rung_result_fields(told))
            assignment.record.release()
            rows, best = self._write_outputs(self.journal.numbered())
            if announce is not None:
                announce(rows, best)
        if rows and self._plot_age() > PLOT_INTERVAL_SECONDS:
            plot_loss_vs_hparams(rows, self.space, self.monitor, self.sweep.plot_png)
        return rows, best

    def give_back(self, assignment: Assignment) -> None:  # a trial this worker did not finish: the next one takes it
        assignment.record.release()

    def close(self, stop_signum: Optional[int], tempfail: bool = False) -> SweepSpec:
        """Sets sweep.json's status as a worker process leaves: finished or failed once every trial is done; else
        running while other workers hold trials, interrupted when none does. Returns the spec.

        Args:
            stop_signum: the signal that stopped this process, or None.
            tempfail: a trial of this process must be tried again later (exit 75).
        """
        with self.locked():
            pairs = self.journal.numbered()
            rows, best = self._write_outputs(pairs, plot=True)
            done = sum(entry.done for _, entry in pairs)
            if done >= self.total():
                status = Status.FINISHED if best is not None else Status.FAILED
            else:
                status = Status.RUNNING if self.held_elsewhere(pairs) else Status.INTERRUPTED
            return self.sweep.record.ended(status, sweep_exit_code(status, stop_signum, tempfail))

    def held_elsewhere(self, pairs: list[TrialPair]) -> int:
        """How many unfinished trials a live worker holds."""
        return sum(live_holder(record.lock_path, watch=self.watch) is not None for record, e in pairs if not e.done)

    def record_rows(self) -> tuple[list[Row], Optional[Row]]:
        """The journal's done trials as results rows, and the best row (read only, no lock)."""
        rows = trial_rows(self.journal.numbered(), self.space.names)
        return rows, best_row(rows)

    def _mark_running(self) -> None:
        """sweep.json says `running` while a worker trains (a worker that left may have said `interrupted`)."""
        spec = self.sweep.spec()
        if spec.get("status") != Status.RUNNING:
            self.sweep.record.running()

    def _write_outputs(self, pairs: list[TrialPair], plot: bool = False) -> tuple[list[Row], Optional[Row]]:
        """results.csv, trials.pickle, sweep.json's counts and (when `plot`) the plot, from the journal (under
        the lock)."""
        rows = trial_rows(pairs, self.space.names)
        if self.schedule is not None:  # and the trials training on past a rung, at that rung
            rows = sorted(rows + [rung_row(entry, self.space.names) for _, entry in pairs
                                  if not entry.done and entry.rung is not None], key=lambda row: row["trial"])
        save_trials(hyperopt_trials(pairs, with_running=False), self.sweep.trials_file)
        write_results_csv(rows, self.space.names, self.monitor, self.sweep.results_csv,
                          scheduled=self.schedule is not None)
        if rows and plot:
            plot_loss_vs_hparams(rows, self.space, self.monitor, self.sweep.plot_png)
        best = best_row(rows)
        hours, full = device_hours_of(rows, self.schedule.max_epochs if self.schedule is not None else None)
        states = [{"trial": row["trial"], "status": row["status"], "rung": row["rung"],
                   "epochs_trained": row["epochs_trained"]} for row in rows] if self.schedule is not None else None
        done = sum(TrialState(row["status"]).done for row in rows)
        self.sweep.record.progress(done, best, hours, full, states)
        return rows, best

    def _plot_age(self) -> float:
        """Seconds since any worker last drew the plot (infinite when there is none)."""
        try:
            return time.time() - self.sweep.plot_png.stat().st_mtime
        except FileNotFoundError:
            return float("inf")


def worker_identity(index: Optional[int] = None) -> dict[str, Any]:
    """Who a worker is, as trial records name it: host, pid, Slurm job and array task, and its number when one
    process runs several (`sweep --workers N`)."""
    identity: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    for key, variable in (("slurm_job", "SLURM_JOB_ID"), ("slurm_array_job", "SLURM_ARRAY_JOB_ID"),
                          ("slurm_array_task", "SLURM_ARRAY_TASK_ID")):
        if os.environ.get(variable):
            identity[key] = os.environ[variable]
    if index is not None:
        identity["worker"] = index
    return identity
