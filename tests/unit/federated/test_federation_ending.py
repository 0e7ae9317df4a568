"""federated/job.py `end_if_running`: how a deployed federation ended is recorded by `federated run` once its
ServerApp let the folder go, or at once when that ServerApp is gone, reaped or not."""

import signal
import subprocess
import sys
import time

from conftest import process_stat, wait_for

from experiments_manager.federated.job import end_if_running
from experiments_manager.federated.stopping import StopRequest
from experiments_manager.run.experiment import Experiment
from experiments_manager.utils.lease import LEASE_NAME

# A ServerApp that takes the folder's lease and ends as Flower's force exit ends it (`os._exit`, 5 s after a stopped
# run's exit handlers began): its lease stays behind, and the process stays a zombie until its parent reaps it.
FORCE_EXITED_SERVER_APP = """
import os, sys
from experiments_manager.utils.lease import Lease
Lease.acquire(sys.argv[1], what="experiment")
os._exit(1)
"""


def _stopped_by_sigterm():
    stop = StopRequest()
    stop.request(signal.SIGTERM)
    return stop.ending(rounds_completed=2)


def test_a_force_exited_server_app_not_yet_reaped_leaves_the_ending_to_the_cli_at_once(tmp_path):
    experiment = Experiment(tmp_path)
    experiment.write_run_info({"status": "running", "attempts": [{"number": 1, "status": "running"}]})
    server_app = subprocess.Popen([sys.executable, "-c", FORCE_EXITED_SERVER_APP, str(tmp_path)])
    try:
        wait_for(lambda: process_stat(server_app.pid)[0] == "Z", 60,
                 "the ServerApp ended, not reaped")
        assert (tmp_path / LEASE_NAME).exists()
        started = time.monotonic()
        end_if_running(experiment, _stopped_by_sigterm(), only_if_running=False, wait_seconds=30)
        waited = time.monotonic() - started
    finally:
        server_app.wait()
    info = experiment.run_info()
    assert (info["status"], info["attempts"][-1]["exit_code"]) == ("interrupted", 143), info
    assert info["reason"] == "stopped by SIGTERM after 2 rounds"
    assert waited < 15, f"waited {waited:.1f} s for a ServerApp that had ended"  # not the whole wait
    assert not (tmp_path / LEASE_NAME).exists()
