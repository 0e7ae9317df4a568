"""A warm interpreter for the tests' command-line runs: TensorFlow imported once per pytest worker, not once per run.

Every `python -m experiments_manager ...` a test runs and waits for (the `run_cli` fixture, `run_command`) starts a
new interpreter that imports TensorFlow, Keras and the package again: ~4-6 CPU-s each, several hundred times in the
suite, most of its CPU. Here one process per pytest worker (`WarmInterpreter`, started on first use) imports them
once, then forks one child per run; the child takes the launcher's stdin, stdout, stderr and other descriptors
(passed over a Unix socket), working folder, environment, arguments and parent (`os.getppid()`), and runs the module
as `python -m` does (`runpy`, so `sys.argv[0]`, `__main__.__spec__` and the printed hints are those of
`python -m experiments_manager`). The test starts `warm_cli_launcher.py` (the standard library only, ~20 ms) in place
of the interpreter: it hands those over, exits with the child's exit code (or dies of the child's signal), forwards
the stop signals a test sends it, and its death (a `subprocess.run` timeout kills it) kills the child. Where the warm
process is gone or unreachable the launcher runs the command in a new interpreter instead. The command's environment
names the launcher in EXPERIMENTS_MANAGER_PYTHON, so the processes the package starts (a sweep's trial hosts, a
run's local workers) fork here too; they stay in this process's process group, not a session of their own (a
group kill reaches their launcher, whose death kills them).

The child is a real process (its own pid, exit code, files, locks and signals); what it does not show is a fresh
interpreter's start-up: the tests of that (quiet start-up, `--help` without TensorFlow, the order of the first lines)
start `cli_command(...)` themselves, as do the tests that signal a run's process group (`start_cli(...,
own_group=True)`: a forked child is in the warm process's group). A run a test kills with -9, signals or reads by
pid is forked too (`start_cli(..., warm=True)`, a `ForkedRun`: its `pid` is the child's, which the launcher writes
to the file EM_WARM_RUN_PID_FILE names; `kill` and `send_signal` reach the child). `EM_TEST_FRESH_PROCESSES=1` runs
every command in a new interpreter, as before.

One warm process per pytest process, started by the first command that needs it (`warm_interpreter`), stopped at
the process's exit (and it leaves by itself when its pytest process is gone).

Example:
    warm = warm_interpreter(STARTUP_CLI_ENV)
    subprocess.run(warm.cli_command("train", "-u", "settings.py"), cwd=workdir, env=warm.environment(cli_env()))
"""

from __future__ import annotations

import array
import atexit
import contextlib
import fcntl
import functools
import json
import os
import runpy
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from experiments_manager.utils.interpreter import PYTHON_VARIABLE

LAUNCHER = Path(__file__).with_name("warm_cli_launcher.py")
FRESH_VARIABLE = "EM_TEST_FRESH_PROCESSES"  # =1: every command in a new interpreter
# What a training run imports besides TensorFlow (measured with `python -X importtime`): imported once here too.
PRELOADED = ("tensorflow", "keras", "experiments_manager.cli", "experiments_manager.training",
             "experiments_manager.callbacks", "experiments_manager.run.experiment", "hyperopt", "matplotlib.figure",
             "matplotlib.backends.backend_agg", "tensorboard.plugins.hparams.api",
             "experiments_manager.sweeps.trial_host")  # (what a sweep's trial host imports to train)
MOST_DESCRIPTORS = 64  # a launcher passes its stdin, stdout, stderr and the few others it was given
READY = "ready"


class WarmInterpreter:
    """The warm process of one pytest worker.

    Args:
        socket_path: where it listens (short enough for a Unix socket: `warm_interpreter` makes a folder in /tmp).
        env: its environment (the tests' `cli_env()`): the variables TensorFlow, Keras and matplotlib read at
            import time come from here; each run gets the environment its test passes (and `tempfile` its TMPDIR).
    """

    def __init__(self, socket_path: Path, env: dict[str, str]) -> None:
        self.socket_path = socket_path
        self.process = subprocess.Popen([sys.executable, __file__, str(socket_path)], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline().strip()  # its imports (~6 s), then READY
        if line != READY:
            self.stop()
            raise RuntimeError(f"the warm interpreter did not start (said {line!r})")

    def command(self) -> list[str]:
        """What to run in place of `python` (`-m MODULE ARGS` follow): the launcher, told where this warm process
        listens."""
        return [sys.executable, "-I", "-S", str(LAUNCHER), str(self.socket_path)]

    def cli_command(self, *arguments: str) -> list[str]:
        """`python -m experiments_manager ARGUMENTS`, forked here."""
        return [*self.command(), "-m", "experiments_manager", *arguments]

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """`env` with EXPERIMENTS_MANAGER_PYTHON naming the launcher: the processes the command starts (a sweep's
        trial hosts, a run's local workers, `train --serve`'s server) fork here too."""
        return {**env, PYTHON_VARIABLE: shlex.join(self.command())}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        shutil.rmtree(self.socket_path.parent, ignore_errors=True)


RUN_PID_VARIABLE = "EM_WARM_RUN_PID_FILE"  # (warm_cli_launcher.py's)


class ForkedRun:
    """A command started through the launcher, as a test handles a run: `pid` is the run's own (the forked child's,
    or the launcher's where it ran a new interpreter instead), and `kill`, `terminate` and `send_signal` reach the
    run itself; `poll`, `wait`, `communicate`, `returncode` and the streams are the launcher's, whose exit code is
    the run's (or which dies of the run's signal).

    Args:
        launcher: the launcher's Popen, started with RUN_PID_VARIABLE naming `pid_file` in its environment.
        pid_file: where the launcher writes the run's pid (in a folder of its own, removed once read).
    """

    def __init__(self, launcher: subprocess.Popen, pid_file: Path) -> None:
        self.launcher = launcher
        self.pid = self._run_pid(pid_file)

    def _run_pid(self, pid_file: Path) -> int:
        """The run's pid, once the launcher wrote it (within ~20 ms: one exchange with the warm process), its
        folder removed; the launcher's own if it ended first."""
        try:
            while not pid_file.is_file():
                if self.launcher.poll() is not None:
                    return self.launcher.pid
                select.select([], [], [], 0.002)
            return int(pid_file.read_text())
        finally:
            shutil.rmtree(pid_file.parent, ignore_errors=True)

    def send_signal(self, number: int) -> None:
        if self.launcher.poll() is None:
            try:
                os.kill(self.pid, number)
            except ProcessLookupError:  # it has ended: its status is on its way to the launcher
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def __getattr__(self, name: str):
        return getattr(self.launcher, name)


_STARTING = threading.Lock()  # two threads of a test asking at once start one warm process


@functools.cache
def _started(environment: tuple[tuple[str, str], ...]) -> WarmInterpreter | None:
    try:
        warm = WarmInterpreter(Path(tempfile.mkdtemp(prefix="em-warm-")) / "cli.sock", dict(environment))
    except (OSError, RuntimeError) as error:  # every command then runs in a new interpreter, as without it
        print(f"warm_cli: no warm interpreter ({error}): commands start new interpreters", file=sys.stderr)
        return None
    atexit.register(warm.stop)
    return warm


def warm_interpreter(environment: tuple[tuple[str, str], ...]) -> WarmInterpreter | None:
    """This pytest process's warm interpreter, started on first use in `environment` (the tests' `cli_env()` as
    the worker started, sorted items: what a test sets later is passed with each command, not here), stopped at
    exit; None with EM_TEST_FRESH_PROCESSES=1 or when it cannot start."""
    if os.environ.get(FRESH_VARIABLE) == "1":
        return None
    with _STARTING:
        return _started(environment)


def _received_request(connection: socket.socket) -> tuple[dict, list[int]]:
    descriptors = array.array("i")
    message, ancillary, _, _ = connection.recvmsg(1 << 20, socket.CMSG_SPACE(MOST_DESCRIPTORS * descriptors.itemsize))
    for _level, _kind, data in ancillary:
        descriptors.frombytes(data[: len(data) - len(data) % descriptors.itemsize])
    return json.loads(message), list(descriptors)


def _run_in_child(request: dict, descriptors: list[int], connection: socket.socket, base_path: list[str]) -> None:
    """In the forked child: becomes `python -m MODULE ARGS` in the launcher's folder, with its descriptors (each at
    the number it had there: 0, 1, 2, a trial host's answers pipe) and its parent (`os.getppid()`)."""
    targets = request["descriptors"]
    above = max(targets) + 1  # copies above every target first: none is overwritten before it is placed
    away = [fcntl.fcntl(descriptor, fcntl.F_DUPFD_CLOEXEC, above) for descriptor in descriptors]
    for descriptor in descriptors:
        os.close(descriptor)
    if connection.fileno() in targets:
        moved = socket.socket(fileno=fcntl.fcntl(connection.fileno(), fcntl.F_DUPFD_CLOEXEC, above))
        connection.detach()
        connection = moved
    for target, descriptor in zip(targets, away):
        os.dup2(descriptor, target)  # inheritable, as the launcher's were
        os.close(descriptor)
    own_pid, parent, real_getppid = os.getpid(), [request["parent"]], os.getppid
    # the launcher's parent (the process that started the command); a process this one forks has its real one
    os.getppid = lambda: parent[0] if os.getpid() == own_pid else real_getppid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # the warm process' imports fixed it: found again from this run's TMPDIR
    python_path = request["env"].get("PYTHONPATH")
    python_path = [os.path.join(request["cwd"], entry)
                   for entry in python_path.split(os.pathsep)] if python_path else []
    sys.path[:] = [request["cwd"], *python_path, *base_path]  # as `python -m` in that folder, with that PYTHONPATH
    sys.argv = ["-m", *request["argv"]]
    loaded = sys.modules.get(request["module"])
    if loaded is not None and not hasattr(loaded, "__path__"):  # a module (not a package) imported here: run afresh
        del sys.modules[request["module"]]  # as `__main__`, as `-m` does, without runpy's warning that it was
    connection.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")

    def follow_the_launcher() -> None:
        """Its new parents become this process's `os.getppid()`; its end (killed) ends this process."""
        try:
            for line in connection.makefile("rb"):
                parent[0] = int(line.split()[1])
        except OSError:  # (a launcher gone before it read the pid: a reset, not an end of file)
            pass
        finally:
            os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=follow_the_launcher, daemon=True).start()
    sys.modules.pop("__mp_main__", None)  # multiprocessing's alias of this file (`__main__`): not the user's code
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    sys.exit(0)


def serve(socket_path: str) -> None:
    """The warm process: imports PRELOADED, then forks a child per request; tells each launcher its child's
    wait status."""
    import importlib

    own = {os.path.abspath(entry) for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)}
    base_path = [entry for entry in sys.path[1:] if os.path.abspath(entry) not in own]  # the installation's
    for name in PRELOADED:
        importlib.import_module(name)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(64)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, socket.socket] = {}
    # a launcher gone (killed) kills its child from here: the child's own watch (`follow_the_launcher`) is a Python
    # thread, which never runs while the child's main thread holds the GIL in native code (TensorFlow waiting for a
    # peer), and such a child would outlive its launcher, holding the test's pipes open
    poller = select.poll()
    poller.register(server, select.POLLIN)
    poller.register(wake_read, select.POLLIN)
    watched: dict[int, int] = {}  # a child's connection's descriptor -> the child's pid
    print(READY, flush=True)
    parent = os.getppid()
    while True:
        events = dict(poller.poll(2000))
        ready = [descriptor for descriptor in (server.fileno(), wake_read) if descriptor in events]
        for descriptor in set(events) & set(watched):  # its launcher's end closed (POLLRDHUP, POLLHUP)
            poller.unregister(descriptor)
            with contextlib.suppress(ProcessLookupError):
                os.kill(watched.pop(descriptor), signal.SIGKILL)
        if os.getppid() != parent:  # its pytest process is gone: so is the reason to stay
            return
        if wake_read in ready:
            os.read(wake_read, 4096)
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                connection = children.pop(pid, None)
                if connection is not None:
                    if watched.pop(connection.fileno(), None) is not None:
                        poller.unregister(connection)
                    try:
                        connection.sendall(json.dumps({"status": status}).encode() + b"\n")
                    except OSError:  # its launcher is gone (and so is the child)
                        pass
                    connection.close()
        if server.fileno() in ready:
            connection, _ = server.accept()
            descriptors = []
            try:
                request, descriptors = _received_request(connection)
                if len(request["descriptors"]) != len(descriptors):  # (over MOST_DESCRIPTORS: cut off)
                    raise ValueError(f"{len(descriptors)} descriptors received, {len(request['descriptors'])} said")
                pid = os.fork()
            except (OSError, ValueError) as error:  # a bad request: its launcher starts a new interpreter
                print(f"warm_cli: a request failed: {error!r}", file=sys.stderr)
                for descriptor in descriptors:
                    os.close(descriptor)
                connection.close()
                continue
            if pid == 0:
                server.close()
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.close(wake_read)
                os.close(wake_write)
                for other in children.values():
                    other.close()
                _run_in_child(request, descriptors, connection, base_path)
            children[pid] = connection
            watched[connection.fileno()] = pid
            poller.register(connection, select.POLLRDHUP)
            for descriptor in descriptors:
                os.close(descriptor)


if __name__ == "__main__":
    serve(sys.argv[1])
