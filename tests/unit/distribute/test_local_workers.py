"""distribute/local_workers.py `LocalWorkers`: a worker that fails while the chief still runs stops the chief, even a
chief deaf to SIGTERM (one waiting in TensorFlow's cluster registration for the worker that failed holds the GIL:
its Python handlers never run), by SIGKILL after the grace time; the launcher then returns the worker's failure."""

import subprocess
import sys
import threading

import pytest

from experiments_manager.distribute.local_workers import LocalWorkers

# a chief that ignores SIGTERM, as one waiting for its peer in TensorFlow's registration does for an hour
DEAF_CHIEF = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
              "time.sleep(600)")


@pytest.mark.claim('a failing worker stops the others')
def test_a_worker_failing_while_the_chief_waits_for_it_ends_the_chief_after_the_grace_time():
    workers = LocalWorkers(["train"], 2, grace_seconds=1.0)
    chief = subprocess.Popen([sys.executable, "-c", DEAF_CHIEF], stdout=subprocess.PIPE, text=True)
    try:
        assert chief.stdout.readline() == "ready\n"  # its SIGTERM ignored from now on
        worker = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])  # its folder's copy failed
        workers.processes = [chief, worker]
        ended = []
        waiting = threading.Thread(target=lambda: ended.append(workers._wait()), daemon=True)
        waiting.start()
        waiting.join(timeout=60)
        assert ended, "the launcher still waited 60 s after worker 1 failed (grace time: 1 s)"
    finally:
        chief.kill()
        chief.wait()
    assert ended[0] == [-9, 1], ended
    assert workers.terminated == {0}  # the chief was told first (SIGTERM), as one that can stop cleanly is
    assert workers.exit_code(ended[0]) == 1  # the worker's failure, not the SIGKILL this launcher sent the chief
