"""A model server process running beside training (`train --serve`).

The server is a separate process (`experiments-manager serve --model_dir ...`)
so serving never competes with training for Python's GIL, and a crash of one
does not take down the other. It runs in its own session (Ctrl-C reaches the
trainer, which checkpoints, then stops the server) and exits by itself if the
training process dies without stopping it.
"""

import logging
import os
import signal
import subprocess
import threading
from typing import TYPE_CHECKING, Iterable, Optional

from experiments_manager.utils.interpreter import python_command
from experiments_manager.utils.signals import signal_handlers

if TYPE_CHECKING:
    from experiments_manager.run.experiment import Experiment

_LOG = logging.getLogger(__name__)


class ServingSidecar:
    """Context manager: a `serve` process for an experiment, stopped on exit.

    Args:
        experiment: the `Experiment` being trained.
        serve_arguments: extra `serve` arguments (ports, host, batching).
        keep_serving: on exit, keep serving until Ctrl-C / SIGTERM instead of stopping.

    Example:

    ```python
    with ServingSidecar(experiment, ["--grpc-port", "8500"]):
        trainer.run()
    ```
    """

    def __init__(self, experiment: "Experiment", serve_arguments: Iterable[str] = (),
                 keep_serving: bool = False) -> None:
        self.experiment = experiment
        self.serve_arguments = list(serve_arguments)
        self.keep_serving = keep_serving
        self.log_path = experiment.root / "serving.log"
        self.process: "Optional[subprocess.Popen[bytes]]" = None
        self._relay: Optional[threading.Thread] = None

    def command(self) -> "list[str]":
        return [
            *python_command(), "-m", "experiments_manager", "serve",
            "--model_dir", str(self.experiment.root),
            "--exit-with-parent", str(os.getpid()),
            *self.serve_arguments,
        ]

    def __enter__(self) -> "ServingSidecar":
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._relay = threading.Thread(target=self._copy_log, name="serving-log", daemon=True)
        self._relay.start()
        _LOG.info("Serving while training (pid %d); server log: %s", self.process.pid, self.log_path)
        return self

    def _copy_log(self) -> None:
        """Writes everything to serving.log; shows addresses, new versions and errors here too."""
        assert self.process is not None and self.process.stdout is not None  # started with stdout=PIPE first
        shown = ("gRPC:", "REST:", "serving version", "failed", "error:")
        with open(self.log_path, "ab") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                text = line.decode(errors="replace").rstrip()
                if any(marker in text for marker in shown):
                    _LOG.info("[serve] %s", text)

    def __exit__(self, *exc_info: object) -> None:
        assert self.process is not None  # started by __enter__
        if self.keep_serving and exc_info[0] is None and self.process.poll() is None:
            self._wait_for_stop_signal()
        self.stop()

    def _wait_for_stop_signal(self) -> None:
        assert self.process is not None  # started by __enter__
        _LOG.info("Training ended; still serving %s. Ctrl-C or SIGTERM stops the server.", self.experiment.root)
        try:
            with signal_handlers(signal.default_int_handler, (signal.SIGTERM,)):  # SIGTERM acts as Ctrl-C
                self.process.wait()
        except KeyboardInterrupt:
            pass

    def stop(self, timeout: float = 15) -> None:
        assert self.process is not None and self._relay is not None  # started by __enter__
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._relay.join(5)
        _LOG.info("Server stopped (log: %s)", self.log_path)
