"""`train --workers N`: the N processes of one multi-worker run on this machine, over loopback.

Each worker is the same `experiments-manager` command with its own `TF_CONFIG`
(worker 0 is the chief). The chief's output is this command's output; the other
workers' output goes to log files whose end is printed if they fail. Stop
signals are forwarded to every worker, so they checkpoint together. A launcher
killed outright (SIGKILL) cannot forward anything: each worker watches it
(`stop_with_launcher`) and stops itself once it is gone.
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Iterable, Mapping, Optional, Sequence

from experiments_manager.utils.errors import SIGNAL_EXIT_BASE, UserInputError
from experiments_manager.utils.interpreter import python_command
from experiments_manager.utils.signals import LAUNCHER_PID_VARIABLE, STOP_SIGNALS, signal_handlers, stop_when_orphaned

FORWARDED_SIGNALS = STOP_SIGNALS
ORPHAN_GRACE_SECONDS = 30.0  # a worker stuck in a collective with a dead peer ignores its SIGTERM: then SIGKILL


class LocalWorkers:
    """Runs one command as `count` cooperating workers on 127.0.0.1.

    Args:
        argv: the CLI arguments every worker runs (without `--workers`).
        count: the number of workers (>= 2).
        grace_seconds: how long the others get to stop once a worker failed.

    Example:

    ```python
    exit_code = LocalWorkers(["train", "-u", "settings.py"], 2).run()
    ```
    """

    def __init__(self, argv: Iterable[str], count: int, grace_seconds: float = 30.0) -> None:
        if os.environ.get("TF_CONFIG"):
            raise UserInputError("--workers: not with TF_CONFIG set (the cluster is already described)")
        self.argv = list(argv)
        self.count = count
        self.grace_seconds = grace_seconds
        self.processes: list[subprocess.Popen[bytes]] = []
        self.stopping_on: Optional[int] = None  # the stop signal forwarded to every worker, once one was
        self.terminated: set[int] = set()  # indices of the workers this launcher stopped because another one failed

    def tf_configs(self, ports: Sequence[int]) -> list[str]:
        """The TF_CONFIG of each worker, as JSON text."""
        workers = [f"127.0.0.1:{port}" for port in ports]
        return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
                for index in range(self.count)]

    def run(self) -> int:
        """Starts the workers, waits for all of them; returns the chief's exit code (else a worker's failure)."""
        with (tempfile.TemporaryDirectory(prefix="experiments_manager_workers_") as log_folder,
              signal_handlers(self._forward, FORWARDED_SIGNALS)):
            logs: list[Optional[Path]] = [None] + [Path(log_folder) / f"worker{index}.log"
                                                   for index in range(1, self.count)]
            for config, log in zip(self.tf_configs(free_loopback_ports(self.count)), logs):
                self.processes.append(self._start(config, log))
            codes = self._wait()
            for index, (code, log) in enumerate(zip(codes, logs)):
                # the chief's own failure is on screen; a worker this launcher stopped has nothing to report
                if code not in (0, codes[0]) and log is not None and not self._stopped_here(index, code):
                    _print_tail(f"worker {index} exited with {code}; the end of its log:", log)
        return self.exit_code(codes)

    def exit_code(self, codes: Sequence[int]) -> int:
        """The launcher's exit code from its workers' `codes`: the chief's, unless another worker failed first (a
        worker this launcher stopped because one failed has not failed)."""
        failures = [code for index, code in enumerate(codes) if code != 0 and not self._stopped_here(index, code)]
        return codes[0] if not failures or failures[0] == codes[0] else failures[0]

    def _stopped_here(self, index: int, code: int) -> bool:
        """The worker ended on the SIGTERM this launcher sent it because another worker had failed, or on its
        SIGKILL after the grace time (deaf to SIGTERM: waiting in a collective, or for the failed worker to join)."""
        return index in self.terminated and code in (-signal.SIGTERM, SIGNAL_EXIT_BASE + signal.SIGTERM,
                                                     -signal.SIGKILL)

    def _start(self, tf_config: str, log: Optional[Path]) -> subprocess.Popen[bytes]:
        command = [*python_command(), "-m", "experiments_manager", *self.argv]
        environment = {**os.environ, "TF_CONFIG": tf_config, LAUNCHER_PID_VARIABLE: str(os.getpid())}
        # a new session each: a terminal's Ctrl-C reaches this launcher once, which forwards it once
        if log is None:
            return subprocess.Popen(command, env=environment, start_new_session=True)
        with open(log, "wb") as output:
            return subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def _forward(self, signum: int, frame: Optional[FrameType]) -> None:
        if frame is not None:  # a signal this launcher received (not its own SIGTERM to stragglers)
            self.stopping_on = signum
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signum)

    def _wait(self) -> list[int]:
        """Waits for every worker; when one fails, the others (stuck in collectives) are stopped.

        A worker that stopped on a stop signal (exit 128 + signal) has not failed, whether the signal was
        sent to every worker or to that one only: the others agree to stop after the same step and get
        their time (a SIGTERM then would kill one between its checkpoint and its exit, its handlers
        already gone).
        """
        clean_stops = {SIGNAL_EXIT_BASE + signum for signum in FORWARDED_SIGNALS}
        stop_deadline: Optional[float] = None
        while True:
            # every worker polled: a failure is seen while the chief runs (a chief whose worker failed before it
            # registered waits TensorFlow's hour in registration, deaf to SIGTERM, until the SIGKILL below)
            codes = [process.poll() for process in self.processes]
            if all(code is not None for code in codes):
                break
            failed = any(code not in (None, 0, *clean_stops) for code in codes)
            stopping = self.stopping_on is not None or any(code in clean_stops for code in codes)
            ended = any(code is not None for code in codes)
            if stop_deadline is None and (failed or (stopping and ended)):
                stop_deadline = time.monotonic() + self.grace_seconds  # then the stragglers are killed
                if failed:
                    self.terminated = {index for index, code in enumerate(codes) if code is None}
                    self._forward(signal.SIGTERM, None)
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                for process in self.processes:
                    if process.poll() is None:
                        process.kill()
            time.sleep(0.2)
        return [process.returncode for process in self.processes]


def stop_with_launcher(environment: Mapping[str, str] = os.environ,
                       grace_seconds: Optional[float] = ORPHAN_GRACE_SECONDS) -> None:
    """In a worker started by `LocalWorkers`: stops this process once its launcher is gone (killed outright).

    SIGTERM first (training checkpoints at the next step and ends `interrupted`), then SIGKILL after
    `grace_seconds`: a worker whose peer is gone waits in the next collective and never reaches that step.
    Does nothing in a process the launcher did not start.

    Args:
        environment: where the launcher's pid is (`LAUNCHER_PID_VARIABLE`; default this process' environment).
        grace_seconds: between the SIGTERM and the SIGKILL (default `ORPHAN_GRACE_SECONDS`; None: no SIGKILL, for
            a sweep's worker, which waits for its trials to checkpoint).

    Example:

    ```python
    stop_with_launcher()   # at the start of `train`, before TensorFlow is imported
    ```
    """
    launcher = environment.get(LAUNCHER_PID_VARIABLE)
    if launcher:
        stop_when_orphaned(int(launcher), f"the launcher (pid {launcher}) of this worker",
                           kill_after=grace_seconds)


def free_loopback_ports(count: int, rng: Optional[random.Random] = None) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1, held together while chosen (so they differ), from below the
    kernel's ephemeral range (`ip_local_port_range`, 32768-60999 by default).

    The workers bind them a few seconds later. A port of the ephemeral range, free now, may be handed meanwhile to
    any process' `bind(0)` or outgoing connection (its source port), and a worker's collectives then talk to a
    stranger and wait for ever (seen under a loaded test suite); below that range only an explicit bind takes it.
    """
    low = _ephemeral_range_start()
    rng = rng or random.SystemRandom()
    candidates = rng.sample(range(max(1024, low - 12000), low), min(200, low - 1024))
    sockets: list[socket.socket] = []
    try:
        for port in candidates:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
            if len(sockets) == count:
                return [sock.getsockname()[1] for sock in sockets]
        raise UserInputError(f"--workers {count}: no {count} free ports on 127.0.0.1 below {low}")
    finally:
        for sock in sockets:
            sock.close()


def _ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def without_workers_flag(argv: Iterable[str]) -> list[str]:
    """The arguments with `--workers N` / `--workers=N` removed (what each worker runs)."""
    kept, skip = [], False
    for argument in argv:
        if skip:
            skip = False
        elif argument == "--workers":
            skip = True
        elif not argument.startswith("--workers="):
            kept.append(argument)
    return kept


def _print_tail(title: str, log: Path, lines: int = 25) -> None:
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    print("\n".join([title, *("  " + line for line in tail)]), file=sys.stderr)
