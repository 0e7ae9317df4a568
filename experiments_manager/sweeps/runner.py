"""Runs a sweep: hyperopt's fmin over trial experiments, bookkeeping after every trial, a clean stop on signals."""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from typing import TYPE_CHECKING, Optional, cast

from experiments_manager.run.record import Status
from experiments_manager.utils.environment_failures import stop_on_environment_failure
from experiments_manager.utils.errors import EXIT_TEMPFAIL
from experiments_manager.utils.signals import STOP_SIGNALS, signal_handlers
from experiments_manager.sweeps.journal import TrialJournal
from experiments_manager.sweeps.objective import TrialInterrupted, quiet_hyperopt_errors
from experiments_manager.sweeps.progress import SweepProgress
from experiments_manager.sweeps.results import (best_row, plot_loss_vs_hparams, summary_lines, trial_line, trial_rows,
                                               write_results_csv)
from experiments_manager.sweeps.trials import save_trials

if TYPE_CHECKING:
    from types import FrameType

    from hyperopt import Trials

    from experiments_manager.sweeps.folder import SweepFolder
    from experiments_manager.sweeps.objective import TrialObjective
    from experiments_manager.sweeps.space import SearchSpace
    from experiments_manager.sweeps.trials import SeededSuggestions

_LOG = logging.getLogger(__name__)
HANDLED_SIGNALS = STOP_SIGNALS
INCOMPLETE_EXIT_CODE = EXIT_TEMPFAIL  # trials were lost (a Spark worker died, say); resume runs them


class SweepRunner:
    """Drives one sweep to its end, or to a stop that `sweep --resume` continues.

    After every finished trial it saves the Trials, rewrites results.csv and the
    plot, and updates sweep.json, so a killed sweep loses at most the trials
    that were running. SIGTERM, SIGUSR1 (Slurm's warning) or Ctrl-C stop it:
    running trials checkpoint, no new trial starts.

    Args:
        sweep: the `SweepFolder`.
        space: the `SearchSpace`.
        objective: the `TrialObjective`.
        trials: hyperopt Trials (sequential) or SparkTrials (parallel).
        algo: the `SeededSuggestions`.
        max_evals: the number of trials the sweep should have in all.
        monitor: the monitored loss name.
        working_folder: the settings' workingFolder (for the TensorBoard hint).
        parallelism: trials at once (hyperopt queues this many suggestions).

    Example:

    ```python
    exit_code = SweepRunner(sweep, space, objective, trials, algo, 20, "val_loss", "experiments").run()
    ```
    """

    def __init__(self, sweep: SweepFolder, space: SearchSpace, objective: TrialObjective, trials: Trials,
                 algo: SeededSuggestions, max_evals: int, monitor: str, working_folder: str,
                 parallelism: int = 1) -> None:
        self.sweep = sweep
        self.space = space
        self.objective = objective
        self.trials = trials
        self.algo = algo
        self.max_evals = max_evals
        self.monitor = monitor
        self.working_folder = working_folder
        self.parallelism = parallelism
        self.stop_signum: Optional[int] = None
        self._reported: set[int] = set()

    def run(self) -> int:
        """Returns the exit code: 0 when a trial finished, 1 when every trial failed, 128 + signal when stopped."""
        import numpy as np
        from hyperopt import fmin
        from hyperopt.exceptions import AllTrialsFailed

        self.sweep.stop_file.unlink(missing_ok=True)
        self.sweep.record.started(self.max_evals, os.getpid())
        self._reported = {doc["tid"] + 1 for doc in self.trials.trials}
        with signal_handlers(self._stop, HANDLED_SIGNALS), warnings.catch_warnings():
            # hyperopt starts SparkTrials' threads without a session; pyspark warns about it for every trial
            warnings.filterwarnings("ignore", message="Spark session is not provided")
            try:
                fmin(self.objective, self.space.expressions, algo=self.algo, max_evals=self.max_evals,
                     trials=self.trials, rstate=np.random.default_rng(self.algo.seed), max_queue_len=self.parallelism,
                     show_progressbar=SweepProgress(self.monitor, self.after_trials), return_argmin=False)
            except TrialInterrupted as interruption:
                self.stop_signum = self.stop_signum or interruption.signum
            except AllTrialsFailed:
                pass
            except OSError as error:  # a full disk, a quota, ...: the sweep is interrupted, resumable once mended
                self._stop_on_environment_failure(error)
                raise
        for line in self.after_trials()[0]:
            print(line, file=sys.stderr, flush=True)  # beside the progress lines
        return self._finish()

    def after_trials(self) -> tuple[list[str], Optional[float]]:
        """Saves the Trials and rewrites results.csv, the plot and sweep.json; returns (new lines, best value)."""
        rows = trial_rows(self.trials, self.space.names)
        save_trials(self.trials, self.sweep.trials_file)
        write_results_csv(rows, self.space.names, self.monitor, self.sweep.results_csv)
        if rows:
            plot_loss_vs_hparams(rows, self.space, self.monitor, self.sweep.plot_png)
        best = best_row(rows)
        self.sweep.record.progress(len(rows), best)
        lines = [trial_line(row, best, self.max_evals, self.monitor, self.sweep.trials_dir) for row in rows if row["trial"] not in self._reported]
        self._reported.update(row["trial"] for row in rows)
        return lines, cast(Optional[float], best and best["best_value"])  # (a row is never empty)

    def _stop(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.stop_signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stop_signum = signum
        _LOG.warning("received %s: stopping the running trials (they checkpoint); no new trial starts",
                     signal.Signals(signum).name)
        self.sweep.stop_file.touch()
        quiet_hyperopt_errors()
        self.trials._fmin_cancelled = True  # hyperopt's own cancel flag (SparkTrials' timeout sets it): queue no more
        TrialJournal(self.sweep.trials_dir).signal_running(signum)

    def _stop_on_environment_failure(self, error: OSError) -> None:
        """Records the sweep interrupted (if the disk still takes that) and raises `EnvironmentFailure`: one line."""
        stop_on_environment_failure(
            error, self.sweep.root, f"experiments-manager sweep --resume {self.sweep.root}",
            lambda line: self.sweep.record.stopped_by_environment(line))

    def _finish(self) -> int:
        rows = trial_rows(self.trials, self.space.names)
        self.sweep.stop_file.unlink(missing_ok=True)
        if self.stop_signum is not None or len(rows) < self.max_evals:
            status = Status.INTERRUPTED
            code = 128 + self.stop_signum if self.stop_signum else INCOMPLETE_EXIT_CODE
        elif best_row(rows) is None:
            status, code = Status.FAILED, 1
        else:
            status, code = Status.FINISHED, 0
        self.sweep.record.ended(status, code)
        lines = [f"status:            {status}" + (f" ({len(rows)} of {self.max_evals} trials done)"
                                                    if status == Status.INTERRUPTED else "")]
        lines += summary_lines(self.sweep, rows, self.monitor, self.working_folder)
        if status == Status.INTERRUPTED:
            lines.append(f"resume with:       experiments-manager sweep --resume {self.sweep.root}")
        print("\n".join(lines), flush=True)
        return code
