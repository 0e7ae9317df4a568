"""A simulated federation whose Ray was stopped by the signal that stopped it: left at once, not after Ray's wait.

`scancel`, a preemption or a terminal's Ctrl-C signal every process of a job, Ray's too. Its GCS (the head node's
control store) or its raylet (the node manager) then dies with the federation's process: the clients' replies never
come, and every call into Ray waits 60 s for them to come back before Ray ends the process with exit code 1
(measured: the raylet died of the SIGTERM, the GCS did not). Once a stop was requested and either is gone, the
process records the federation's ending (when its server has not), stops what is left of Ray's processes and
leaves with 128 + the signal.

Example:

```python
with stop_on_signals() as stop, exit_when_ray_stops(stop, experiment):
    run_simulation(...)
```
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from experiments_manager.federated.stopping import StopRequest
    from experiments_manager.run.experiment import Experiment

_LOG = logging.getLogger(__name__)
POLL_SECONDS = 0.5


@contextlib.contextmanager
def exit_when_ray_stops(stop: StopRequest, experiment: Experiment) -> Iterator[None]:
    """Within the block, a thread watches for a stop whose signal also ended Ray's GCS or raylet; then it records the
    federation's ending in `experiment` (if its server has not), kills Ray's remaining processes and ends the
    process with `stop.exit_code`."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(POLL_SECONDS):
            if stop.is_set() and not _ray_alive():
                _leave(stop, experiment)

    watcher = threading.Thread(target=watch, name="ray-gone-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()


def _head_node() -> Any:
    import ray._private.worker

    return ray._private.worker._global_node  # the head this process started (ray.init), else None


def _ray_alive() -> bool:
    """Whether the head's control store and node manager still run (the signal may end either first)."""
    node = _head_node()
    if node is None:  # not started here, or shut down: nothing to wait for
        return True
    return all(info.process.poll() is None for kind in ("gcs_server", "raylet")
               for info in node.all_processes.get(kind, []))


def _leave(stop: StopRequest, experiment: Experiment) -> None:
    from experiments_manager.federated.job import end_if_running

    end_if_running(experiment, stop.ending(experiment.run_info().get("rounds_completed")))
    info = experiment.run_info()
    name = signal.Signals(stop.signum or signal.SIGTERM).name
    _LOG.warning("%s stopped Ray's processes too (a signal to the whole job): leaving without Ray's shutdown; "
                 "status: %s (%s); the federation's folder: %s", name, info.get("status"), info.get("reason"),
                 experiment.root)
    for infos in _head_node().all_processes.values():
        for info in infos:
            if info.process.poll() is None:
                info.process.kill()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(stop.exit_code)
