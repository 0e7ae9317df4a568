"""`--parallelism P`'s launcher: a stop signal reaches the worker processes this driver's Spark tasks started."""

import os
import signal
import subprocess
import sys

from experiments_manager.sweeps.spark import SPARK_TASK_VARIABLE, _signal_local_workers


def test_a_stop_reaches_the_local_workers_and_not_their_trials_or_other_processes():
    """A worker (the variable set) below this process gets the signal; its child (a trial, which inherits the
    variable) gets it from the worker only; a process without the variable is left alone."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    worker_code = ("import subprocess, sys, time; trial = subprocess.Popen([sys.executable, '-c', "
                   "'import time; time.sleep(60)']); print(trial.pid, flush=True); time.sleep(60)")
    worker = subprocess.Popen([sys.executable, "-c", worker_code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, SPARK_TASK_VARIABLE: "0"})
    bystander = subprocess.Popen(sleeper)
    try:
        trial = int(worker.stdout.readline())
        _signal_local_workers(signal.SIGTERM)
        assert worker.wait(timeout=30) == -signal.SIGTERM
        assert bystander.poll() is None
        os.kill(trial, 0)  # still there: its worker passes the stop on (this one, a sleep, did not)
    finally:
        for process in (worker, bystander):
            process.kill()
            process.wait()
        try:
            os.kill(trial, signal.SIGKILL)
        except (OSError, NameError):
            pass
