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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union, cast

from experiments_manager.run.record import Status
from experiments_manager.run.names import now
from experiments_manager.sweeps.folder import SweepFolder
from experiments_manager.sweeps.spec_writer import SweepSpec
from experiments_manager.sweeps.journal import DONE_STATUSES, TrialEntry, TrialJournal, TrialPair
from experiments_manager.sweeps.legacy import legacy_experiment, legacy_result
from experiments_manager.sweeps.record_repair import repair_damaged
from experiments_manager.sweeps.results import (best_row, device_hours_of, plot_loss_vs_hparams, rung_row,
                                                trial_rows, write_results_csv)
from experiments_manager.sweeps.scheduler import RungSchedule, reopens
from experiments_manager.sweeps.space import SearchSpace, python_scalar
from experiments_manager.sweeps.steps import Assignment, NothingLeft
from experiments_manager.sweeps.trials import SeededSuggestions, hyperopt_trials, save_trials
from experiments_manager.utils.errors import EXIT_TEMPFAIL, UserInputError
from experiments_manager.utils.lease import LEASE_NAME, Lease
from experiments_manager.utils.lease_holder import LeaseWatch, lease_timeout, live_holder, read_holder

if TYPE_CHECKING:
    from experiments_manager.sweeps.journal import TrialRecord
    from experiments_manager.sweeps.results import Row

LOCK_NAME = "sweep.lock"
LOCK_TIMEOUT_SECONDS = 60.0  # a lock holder whose heartbeat is this old (another node) is gone
LOCK_PATIENCE_SECONDS = 900.0  # how long a worker waits for the lock before it gives up (exit 75)
PLOT_INTERVAL_SECONDS = 10.0  # loss_vs_hparams.png is redrawn at most this often (any worker), and as one leaves
MIN_STARTUP_TRIALS = 20  # hyperopt's TPE default
_RESULT_FIELDS = ("status", "experiment", "log", "reason", "best_value", "best_epoch", "loss")


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
        self._domain: Any = None  # hyperopt's Domain of the space, once built

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
        """Claims the next trial for `worker`: one to take over (interrupted, or its worker provably gone) first,
        then (with a scheduler) a paused trial to promote to its next rung, else a new point from the algorithm;
        `NothingLeft` when none is there.

        Args:
            worker: who asks (`worker_identity()`), recorded in the trial's record.
        """
        with self.locked():
            pairs, damaged = self.journal.scan()  # a damaged record: named in one line, restored or set aside
            pairs = self.journal.numbered() if repair_damaged(damaged, self.sweep, self.watch) else pairs
            watching = 0
            record: Optional[TrialRecord]  # (a journal's record below, None where `create` finds its number taken)
            for record, entry in pairs:
                if entry.done:
                    continue
                holder = live_holder(record.lock_path, watch=self.watch)
                if holder is not None:  # a live worker's claim is not even tried (each try writes a file)
                    if entry.experiment and not holder.is_local():  # its trial's writer, watched alongside
                        live_holder(Path(entry.experiment) / LEASE_NAME, watch=self.watch)  # (one wait in all)
                    watching += holder.looks_stale(lease_timeout())
                    continue
                released = read_holder(record.lock_path) is None
                if record.lock(self.watch):
                    why = ("it was interrupted" if entry.status == Status.INTERRUPTED and released else
                           f"its worker, {_describe(entry.worker)}, is gone")
                    same_host = (entry.worker or {}).get("host") == worker["host"]
                    record.update(worker=worker, takeovers=entry.takeovers + 1,  # a pid means something on its host only
                                  pid=entry.pid if same_host else None)
                    self._mark_running()
                    return Assignment(record, cast(TrialEntry, record.entry()), taken_over=why)  # (just written)
            promoted = self._promote(pairs, worker)
            if promoted is not None:
                return promoted
            unreadable: set[int] = set()  # numbers whose record exists but cannot be read now (a network file system)
            while len(pairs) < self.total():
                tid = _first_free(pairs, unreadable)
                hparams, vals = self.suggest(tid, pairs)
                earlier = next((entry for _, entry in pairs if entry.final and entry.hparams == hparams), None)
                earlier = earlier or legacy_result(self.sweep.trials_dir, hparams)
                if earlier is not None:  # a finished point suggested again: its result, not a retraining
                    entry = TrialEntry(hparams=hparams, tid=tid, vals=vals, seconds=0.0, same_as=earlier.number,
                                       ended=now(), **{name: getattr(earlier, name) for name in _RESULT_FIELDS})
                else:
                    entry = TrialEntry(hparams=hparams, tid=tid, vals=vals, worker=worker,
                                       experiment=legacy_experiment(self.sweep.trials_dir, hparams),
                                       **(self.schedule.new_trial_fields(tid) if self.schedule else {}))
                record = self.journal.create(entry)
                if record is None:  # its number is taken by a record this listing missed
                    unreadable.add(tid)
                    continue
                pairs.append((record, entry))
                if earlier is None and record.lock():
                    self._mark_running()
                    return Assignment(record, entry)
            done = sum(entry.done for _, entry in pairs)
            return NothingLeft(done=done, running=len(pairs) - done, watching=watching)

    def _promote(self, pairs: list[TrialPair], worker: dict[str, Any]) -> Optional[Assignment]:
        """With a scheduler: the paused trial it promotes now, claimed and marked `promoted` to its next rung (a
        worker that dies now leaves a claim the next ask takes over), or None."""
        found = self.schedule.claim_promotion(pairs, lambda record: record.lock(self.watch)) if self.schedule else None
        if found is None:
            return None
        record, epochs = found
        entry = record.entry()
        info = record.update(status="promoted", epochs_target=epochs,
                             promotions=entry.promotions + 1 if entry else 1, worker=worker, pid=None)
        self._mark_running()
        return Assignment(record, TrialEntry.from_json(info), promoted_to=epochs)

    def reopen_finished(self, old_max_epochs: int) -> int:
        """After the scheduler's last rung was raised from `old_max_epochs` (under the lock): the trials that
        finished there become paused (`scheduler.reopens`), so that the best of them continue. Returns how many."""
        reopened = [record.update(status="paused") for record, entry in self.journal.numbered()
                    if reopens(entry, old_max_epochs)]
        self.journal = TrialJournal(self.journal.folder)  # forget what it read of them as final
        return len(reopened)

    def record_result(self, assignment: Assignment) -> tuple[list[Row], Optional[Row]]:
        """Releases the trial's claim and rewrites the outputs from the journal; returns (rows, best row). The
        plot is redrawn after the lock is released, when the last one (any worker's) is `PLOT_INTERVAL_SECONDS`
        old: drawing it takes longer than the rest of a tell.

        Args:
            assignment: the trial, its record already holding its result (`objective.run_trial` wrote it).
        """
        with self.locked():
            told = assignment.record.entry()
            if self.schedule is not None and told is not None and told.rung_value_pending:  # its value at its rung
                assignment.record.update(**self.schedule.rung_result_fields(told))
            assignment.record.release()
            rows, best = self._write_outputs(self.journal.numbered())
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
            return self.sweep.record.ended(status, exit_code(status.value, stop_signum, tempfail))

    def held_elsewhere(self, pairs: list[TrialPair]) -> int:
        """How many unfinished trials a live worker holds."""
        return sum(live_holder(record.lock_path, watch=self.watch) is not None for record, e in pairs if not e.done)

    def suggest(self, tid: int, pairs: list[TrialPair]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """The algorithm's point for trial `tid`, from the journal's trials: (hparams, hyperopt's vals).

        Args:
            tid: the new trial's id.
            pairs: the journal's (record, entry) pairs (`TrialJournal.numbered()`).
        """
        from hyperopt import space_eval
        from hyperopt.base import Domain, spec_from_misc

        if self._domain is None:
            self._domain = Domain(lambda sample: 0.0, self.space.expressions)
        (doc,) = self.algo([tid], self._domain, hyperopt_trials(pairs, with_running=True), 0)
        vals = {name: [python_scalar(value) for value in values] for name, values in doc["misc"]["vals"].items()}
        sample = space_eval(self.space.expressions, spec_from_misc({"vals": vals}))
        return self.space.hparams_for(sample), vals

    def record_rows(self) -> tuple[list[Row], Optional[Row]]:
        """The journal's done trials as results rows, and the best row (read only, no lock)."""
        rows = trial_rows(hyperopt_trials(self.journal.numbered(), with_running=False), self.space.names)
        return rows, best_row(rows)

    def _mark_running(self) -> None:
        """sweep.json says `running` while a worker trains (a worker that left may have said `interrupted`)."""
        spec = self.sweep.spec()
        if spec.get("status") != Status.RUNNING:
            self.sweep.record.running()

    def _write_outputs(self, pairs: list[TrialPair], plot: bool = False) -> tuple[list[Row], Optional[Row]]:
        """results.csv, trials.pickle, sweep.json's counts and (when `plot`) the plot, from the journal (under
        the lock)."""
        trials = hyperopt_trials(pairs, with_running=False)
        rows = trial_rows(trials, self.space.names)
        if self.schedule is not None:  # and the trials training on past a rung, at that rung
            rows = sorted(rows + [rung_row(entry, self.space.names) for _, entry in pairs
                                  if not entry.done and entry.rung is not None], key=lambda row: row["trial"])
        save_trials(trials, self.sweep.trials_file)
        write_results_csv(rows, self.space.names, self.monitor, self.sweep.results_csv,
                          scheduled=self.schedule is not None)
        if rows and plot:
            plot_loss_vs_hparams(rows, self.space, self.monitor, self.sweep.plot_png)
        best = best_row(rows)
        hours, full = device_hours_of(rows, self.schedule.max_epochs if self.schedule is not None else None)
        states = [{"trial": row["trial"], "status": row["status"], "rung": row["rung"],
                   "epochs_trained": row["epochs_trained"]} for row in rows] if self.schedule is not None else None
        done = sum(row["status"] in DONE_STATUSES for row in rows)
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


def startup_trials(workers: int) -> int:
    """How many trials TPE draws at random before it models: hyperopt's 20, at least 2 per worker."""
    return max(MIN_STARTUP_TRIALS, 2 * workers)


def _describe(worker: Optional[dict[str, Any]]) -> str:
    if not worker:
        return "an unknown worker"
    text = f"pid {worker.get('pid')} on {worker.get('host')}"
    if worker.get("slurm_array_task") is not None:
        text += f" (Slurm array task {worker.get('slurm_array_job')}_{worker['slurm_array_task']})"
    elif worker.get("slurm_job"):
        text += f" (Slurm job {worker['slurm_job']})"
    return text


def exit_code(status: str, stop_signum: Optional[int], tempfail: bool = False) -> int:
    """A worker process' exit code from the sweep's status as it leaves: 0 finished (or the rest runs in other
    workers), 1 every trial failed, else 128 + the signal that stopped it, or 75 (try again later)."""
    if status in (Status.FINISHED, Status.FAILED, Status.RUNNING) and not (
            status == Status.RUNNING and (stop_signum or tempfail)):
        return {Status.FINISHED.value: 0, Status.FAILED.value: 1, Status.RUNNING.value: 0}[status]
    return 128 + stop_signum if stop_signum else EXIT_TEMPFAIL


def _first_free(pairs: list[TrialPair], also_taken: set[int]) -> int:
    taken = {entry.tid for _, entry in pairs} | also_taken
    tid = 0
    while tid in taken:
        tid += 1
    return tid
