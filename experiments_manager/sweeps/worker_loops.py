"""The workers of a sweep in this process: each asks the sweep folder for a trial, trains it, records it, asks again.

A sequential sweep is one worker; `sweep --workers N` runs N in this process (threads: each sends its trials to
its own warm trial host, `trial_host.py`, and waits for them); every task of a Slurm array
(`tools/slurm/sweep_array.sbatch`) is one more, in its own process, on any node. They share nothing but the sweep
folder (`store.py`).

A stop signal (SIGTERM, SIGUSR1 from Slurm, Ctrl-C) reaches every running trial of this process: each
checkpoints, its record says `interrupted` and its claim is released at once, so another worker (or this job,
requeued) continues it from its checkpoint. No new trial starts.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

from experiments_manager.run.record import Status
from experiments_manager.run.experiment import RUN_FILE_NAME
from experiments_manager.sweeps.trial_runner import run_trial
from experiments_manager.sweeps.progress import SweepProgress
from experiments_manager.sweeps.results import summary_lines, trial_line
from experiments_manager.sweeps.steps import Assignment, NothingLeft
from experiments_manager.sweeps.trial_host import TrialHost
from experiments_manager.sweeps.outcomes import sweep_exit_code
from experiments_manager.sweeps.store import SweepStore, worker_identity
from experiments_manager.sweeps.trial_state import TrialState
from experiments_manager.utils.command_name import command_name
from experiments_manager.utils.environment_failures import stop_on_environment_failure
from experiments_manager.utils.lease import LeaseLost
from experiments_manager.utils.lease_holder import lease_timeout
from experiments_manager.utils.signals import STOP_SIGNALS, SignalSafeEvent, signal_handlers

if TYPE_CHECKING:
    import subprocess
    from types import FrameType

    from experiments_manager.settings.script import ScriptSource

    from experiments_manager.sweeps.results import Row

_LOG = logging.getLogger(__name__)
WATCH_POLL_SECONDS = 5.0  # how often a worker with nothing else to do asks again while claims elsewhere look stale


class SweepWorkers:
    """Runs `workers` worker loops of one sweep in this process until nothing is left or a signal stops them.

    Args:
        store: the sweep's `SweepStore`.
        settings: the settings new trials train from (`ScriptSource`: a resumed sweep's copy, run as the user's
            file).
        working_dir: the trial hosts' current directory.
        fixed_hparams: `--hparam` overrides of every trial.
        working_folder: the settings' workingFolder (the summary's TensorBoard hint).
        workers: worker loops in this process (default 1).
        trust_code: the sweep was resumed or joined with `--trust-code`: the trials it resumes run their folders'
            code whoever owns them (default False: each trial's folder is checked as `train --resume` checks it).

    Example:

    ```python
    source = ScriptSource(runs=Path("settings.py"), script=Path("settings.py"))
    exit_code = SweepWorkers(store, source, "/home/me/project", {"nbEpoch": 5}, "experiments", 2).run()
    ```
    """

    def __init__(self, store: SweepStore, settings: ScriptSource, working_dir: str, fixed_hparams: dict[str, Any],
                 working_folder: str, workers: int = 1, trust_code: bool = False) -> None:
        self.store = store
        self.settings = settings
        self.working_dir = working_dir
        self.fixed_hparams = dict(fixed_hparams)
        self.working_folder = working_folder
        self.workers = workers
        self.trust_code = trust_code
        self.stop_signum: Optional[int] = None
        self._stopping = SignalSafeEvent()  # set by a signal handler
        self._results = 0  # how many results this process' workers recorded (a waiting worker waits for a change)
        self._result_recorded = threading.Condition()
        self._processes: dict[Optional[int], subprocess.Popen[bytes]] = {}  # worker index -> its trial host's process
        self._hosts: dict[Optional[int], TrialHost] = {}  # worker index -> its warm trial host
        self._printing = threading.Lock()
        self._failure: Optional[BaseException] = None
        self._trained: set[int] = set()  # the trials this process' workers trained (a segment or more each)
        self._segments: list[str] = []  # each segment they trained: 'first', 'promotion' or 'takeover'
        self._tempfail = False  # a trial must be tried again later (exit 75)
        self._left: Optional[NothingLeft] = None
        self._bar: Optional[Any] = None  # (a tqdm bar, while run() runs)

    def run(self) -> int:
        """Returns the exit code (`outcomes.sweep_exit_code`): 0 when the sweep is finished (or the rest runs in other
        workers), 1 when every trial failed, 128 + signal when stopped before the end, 75 when trials must be
        tried again later."""
        sweep = self.store.sweep
        with (signal_handlers(self._stop, STOP_SIGNALS),
              SweepProgress(self.store.monitor)(
                  sweep.spec().get("trials_done", 0), self.store.total()) as bar):
            self._bar = bar
            try:
                if self.workers == 1:
                    self._host(None).start()  # TensorFlow imports there while this worker asks for a trial
                    self._loop(None)
                else:
                    threads = [threading.Thread(target=self._guarded_loop, args=(index,), name=f"sweep worker {index}")
                               for index in range(1, self.workers + 1)]
                    for index in range(1, self.workers + 1):
                        self._host(index).start()
                    for thread in threads:
                        thread.start()
                    while any(thread.is_alive() for thread in threads):
                        for thread in threads:
                            thread.join(timeout=0.2)  # the main thread stays free for the signal handler
                    if self._failure is not None:
                        raise self._failure
            except OSError as error:  # a full disk, a quota, ...: resumable once mended
                stop_on_environment_failure(
                    error, sweep.root, f"{command_name()} sweep --resume {sweep.root}",
                    lambda line: sweep.record.stopped_by_environment(line))
                raise
            finally:
                self._close_hosts()
        return self.finish()

    def _guarded_loop(self, index: int) -> None:
        try:
            self._loop(index)
        except BaseException as error:  # raised again in the main thread; the other workers stop their trials
            self._failure = self._failure or error
            self._stop(signal.SIGTERM, None, by_a_failed_worker_thread=True)

    def _loop(self, index: Optional[int]) -> None:
        worker = worker_identity(index)
        watching_announced = False
        while not self._stopping.is_set():
            results_seen = self._results  # (read before asking: a result recorded while it asks is not missed)
            step = self.store.next_trial(worker)
            if isinstance(step, NothingLeft) and step.watching:  # claims elsewhere that look stale: ask again
                if not watching_announced:
                    self._print(f"{step.watching} trial(s) held on other nodes look stale: watching their "
                                f"heartbeats for up to {lease_timeout():.0f} s before taking them over"
                                f"{self._suffix(index)}")
                    watching_announced = True
                self._stopping.wait(WATCH_POLL_SECONDS)
                continue
            if isinstance(step, NothingLeft) and step.running and self.store.schedule is not None:
                self._wait_for_a_result(results_seen)  # a trial that reaches its rung may make one promotable
                continue
            if isinstance(step, NothingLeft):
                self._left = step
                return
            if self._stopping.is_set():  # the stop came while it asked
                self.store.give_back(step)
                return
            if not self._train(step, index):
                return

    def _wait_for_a_result(self, results_seen: int) -> None:
        """Waits until a worker of this process has recorded a result since it had recorded `results_seen`, for at
        most `WATCH_POLL_SECONDS` (a worker in another process may record one: the sweep folder is asked again
        then), or a stop (a signal handler sets it: looked at every 0.2 s)."""
        deadline = time.monotonic() + WATCH_POLL_SECONDS
        while not self._stopping.is_set() and time.monotonic() < deadline:
            with self._result_recorded:
                if self._result_recorded.wait_for(lambda: self._results != results_seen, timeout=0.2):
                    return

    def _train(self, step: Assignment, index: Optional[int]) -> bool:
        """Trains the assigned trial; False when this worker stops (a signal, or a trial that must be tried again
        later: a full disk, stalled input, its experiment held by another writer)."""
        number, total = step.entry.number, self.store.total()
        if step.taken_over:
            experiment = step.entry.experiment
            saved = experiment is not None and any((Path(experiment) / "checkpoints").glob("ckpt-*/state.json"))
            how = ("it continues its experiment from its last checkpoint" if saved else
                   "it continues its experiment from the first epoch: no checkpoint yet"
                   if experiment and (Path(experiment) / RUN_FILE_NAME).is_file()
                   else "it starts from the beginning: it had no experiment yet")
            self._print(f"taking over trial {number}/{total} ({step.taken_over}): {how}{self._suffix(index)}")
        if step.promoted_to is not None and self.store.schedule is not None:
            self._print(f"promoting trial {number}/{total} (paused at {step.entry.rung} epochs, in the top 1/"
                        f"{self.store.schedule.eta} there): it continues from its checkpoint to {step.promoted_to} "
                        f"epochs{self._suffix(index)}")
        try:
            result = run_trial(step.record, self.settings, {**self.fixed_hparams, **step.entry.hparams},
                               self._host(index), stop=self._stopping, watch=self.store.watch,
                               epochs=step.entry.epochs_target, trust_code=self.trust_code)
        except LeaseLost as lost:  # this worker stalled and another took the trial over: it is theirs now
            self.store.give_back(step)  # (stops the claim's heartbeat; the lease file is the new holder's)
            self._print(f"trial {number}/{total} lost: {lost}{self._suffix(index)}")
            self._tempfail = True
            return False
        except BaseException:
            self.store.give_back(step)
            raise
        if result.state is TrialState.INTERRUPTED:
            self.store.give_back(step)
            if self._stopping.is_set():
                self._print(f"stopped trial {number}/{total}: checkpointed and released (a worker continues "
                            f"it){self._suffix(index)}")
            else:  # not a stop: trying it again at once would meet the same cause
                self._tempfail = True
                self._print(f"trial {number}/{total} must be tried again later ({result.reason}): released; "
                            f"this worker stops{self._suffix(index)}")
            return False
        def announce(rows: list[Row], best: Optional[Row]) -> None:
            row = next(row for row in rows if row["trial"] == number)
            self._print(trial_line(row, best, total, self.store.monitor, self.store.sweep.trials_dir)
                        + self._suffix(index), best=best,
                        advance=0 if step.entry.promotions else 1)  # (a promoted trial counted at its first rung)

        self.store.record_result(step, announce)
        with self._result_recorded:  # the workers of this process waiting for a promotable trial ask again
            self._results += 1
            self._result_recorded.notify_all()
        self._trained.add(cast(int, number))  # (a numbered trial)
        self._segments.append("promotion" if step.promoted_to is not None else
                              "takeover" if step.taken_over else "first")
        return True

    def _host(self, index: Optional[int]) -> TrialHost:
        """This worker loop's warm trial host (`trial_host.py`), started on first use."""
        if index not in self._hosts:
            self._hosts[index] = TrialHost(self.working_dir, on_start=lambda process: self._started(index, process))
        return self._hosts[index]

    def _close_hosts(self) -> None:
        for host in self._hosts.values():
            host.close()
        self._hosts.clear()
        self._processes.clear()

    def _started(self, index: Optional[int], process: subprocess.Popen[bytes]) -> None:
        self._processes[index] = process
        if self.stop_signum is not None:  # the stop came while it started: it stops at once too
            _signal_group(process.pid, self.stop_signum)

    def _stop(self, signum: int, frame: Optional[FrameType], by_a_failed_worker_thread: bool = False) -> None:
        if self.stop_signum is not None and signum == signal.SIGINT and not by_a_failed_worker_thread:
            raise KeyboardInterrupt
        self.stop_signum = self.stop_signum or signum
        self._stopping.set()
        if not by_a_failed_worker_thread:  # (its error is raised in the main thread)
            _LOG.warning("received %s: stopping this worker's running trials (they checkpoint); no new trial "
                         "starts here", signal.Signals(signum).name)
        for process in list(self._processes.values()):
            _signal_group(process.pid, signum)

    def _print(self, line: str, best: Optional[Row] = None, advance: int = 0) -> None:
        if self._bar is None:
            raise RuntimeError("SweepWorker._print: called before run() opened the progress bar")
        with self._printing:
            bar = self._bar
            if bar.disable:
                print(line, file=sys.stderr, flush=True)
            else:
                bar.write(line, file=sys.stderr)
            if best is not None:
                bar.set_postfix_str(f"best {self.store.monitor}: {best['best_value']:.6g}", refresh=False)
            bar.update(advance)

    def _suffix(self, index: Optional[int]) -> str:
        return f" [worker {index}]" if index is not None else ""

    def finish(self, launched: Optional[str] = None, tempfail: bool = False) -> int:
        """Records how this process leaves the sweep (`SweepStore.close`), prints the summary; returns the exit code.

        Args:
            launched: what this process started instead of training itself (`--parallelism`: "4 Spark tasks"), or
                None (its worker loops trained).
            tempfail: a worker it started must be tried again later (exit 75).
        """
        self._tempfail = self._tempfail or tempfail
        spec = self.store.close(self.stop_signum, tempfail=self._tempfail)
        rows, _ = self.store.record_rows()
        status, total = spec["status"], spec.get("max_evals")
        done = spec.get("trials_done", 0)
        if status == Status.RUNNING:
            others = f"{self._left.running} running" if self._left is not None else "the rest run"
            head = f"status:            running ({done} of {total} trials done; {others} in other workers)"
        else:
            head = f"status:            {status}" + (f" ({done} of {total} trials done)" if status == Status.INTERRUPTED
                                                      else "")
        lines = [head, f"workers:           {launched}" if launched is not None else self._trained_here()]
        lines += summary_lines(self.store.sweep, rows, self.store.monitor, self.working_folder)
        if status == Status.INTERRUPTED:
            lines.append(f"resume with:       {command_name()} sweep --resume {self.store.sweep.root}")
        print("\n".join(lines), flush=True)
        return sweep_exit_code(status, self.stop_signum, self._tempfail)

    def _trained_here(self) -> str:
        """'trained here:      12 trials in 17 segments (12 first rungs, 5 promotions) by 2 workers'."""
        trials = len(self._trained)
        text = f"trained here:      {trials} trial{'s' * (trials != 1)}"
        if len(self._segments) > trials:
            kinds = [(self._segments.count("first"), "first rung", "first rungs"),
                     (self._segments.count("promotion"), "promotion", "promotions"),
                     (self._segments.count("takeover"), "taken over", "taken over")]
            text += f" in {len(self._segments)} segments (" + ", ".join(
                f"{count} {one if count == 1 else many}" for count, one, many in kinds if count) + ")"
        return text + (f" by {self.workers} workers" if self.workers > 1 else "")


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except OSError:
        pass
