"""A warm trial host: one child process per sweep worker that imports TensorFlow once and trains trial after trial.

A process per trial paid Python's and TensorFlow's start-up (5-8 s of CPU here) before every trial and every ASHA
promotion. A worker now keeps one host (`TrialHost`, the parent's handle) and sends it one `TrialRequest` at a time
over its stdin, one JSON line; the host (`main`, this module run as `python -m
experiments_manager.sweeps.trial_host`) trains it in its own process, with its output in the trial's log (file
descriptors 1 and 2 point there while it runs), and answers with the trial's exit code on a pipe of its own. Each
trial is still an ordinary experiment in its own folder, trained by `training.train` or continued by
`training.resume` as `train` and `train --resume` do; between two trials the host clears Keras' session and forgets
the user's modules, so the next trial imports them afresh, as a new process would.

What a process per trial gave stays true:

- **A crashing trial ends only itself.** An error a trial raises is its own `failed` record (its traceback in its
  log); the host is then retired and the next trial gets a new one. A host that dies (killed, out of memory, a
  segfault in native code) ends its trial as a killed trial process did (`failed`, or `interrupted` by a stop
  signal); the worker starts a new host for the next one.
- **Stop signals and orphans.** The host has a session of its own: the worker passes its stop signal on (the
  trial checkpoints and ends `interrupted`); a host whose worker is gone stops as if Slurm had signalled it.
- **Bounded memory.** A host is retired after `MAX_TRIALS_PER_HOST` trials, or when its resident memory has grown
  by more than `MAX_RSS_GROWTH_BYTES` since its first trial (the next trial gets a new host).

Example (the parent's side):

```python
host = TrialHost(working_dir="/home/me/project")
code = host.run(TrialRequest(record="sweep/trials/trial-0001.json", log="sweep/trials/trial-0001.log",
                             settings="settings.py", hparams={"learningRate": 0.01}))
host.close()
```
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, Iterator, Optional, Sequence

from experiments_manager.sweeps.trial_leftovers import (clear_session, let_go_of_trial, registered_gradients,
                                                        resident_bytes)
from experiments_manager.sweeps.trial_training import TrialRequest, TrialTrained, train_trial
from experiments_manager.utils.errors import EXIT_USER_ERROR, print_problems
from experiments_manager.utils.interpreter import python_command

if TYPE_CHECKING:
    from experiments_manager.utils.atomic import PathLike

ORPHAN_CHECK_SECS = 0.5
ANSWER_POLL_SECONDS = 1.0  # how often a worker waiting for its host's answer looks whether the host is gone
MAX_TRIALS_PER_HOST = 200  # then a new host: what a long sweep's hosts could gather is bounded whatever it is
MAX_RSS_GROWTH_BYTES = 1 << 30  # resident memory grown this much since the host's first trial: a new host
CLOSE_SECONDS = 10.0  # how long `close` waits for an idle host to leave before it kills it
_REUSABLE_EXIT_CODES = (0, EXIT_USER_ERROR)  # a trial that ended so leaves the host as it found it


def _stderr_fd() -> int:
    """The file descriptor the host's stray output goes to: this process's `sys.stderr`, or descriptor 2 where
    `sys.stderr` is not a file (a Jupyter kernel's stream: its own log)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return 2


class TrialHost:
    """A worker's handle on its warm trial host: started on first use (or at once with `start`), restarted when it
    died or retired itself.

    Args:
        working_dir: the host's current directory (relative paths in the settings).
        on_start: function(Popen), called with each new host process (a worker's stop handler signals it); default
            None.

    Example:

    ```python
    host = TrialHost("/home/me/project")
    host.start()                 # TensorFlow imports while the worker asks for its first trial
    code = host.run(request)     # the trial's exit code, as `experiments-manager train` would exit
    host.close()
    ```
    """

    def __init__(self, working_dir: PathLike,
                 on_start: Optional[Callable[[subprocess.Popen[bytes]], None]] = None) -> None:
        self.working_dir = Path(working_dir)
        self.on_start = on_start
        self.process: Optional[subprocess.Popen[bytes]] = None
        self._answers: Optional[IO[str]] = None

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process is not None else None

    def start(self) -> subprocess.Popen[bytes]:
        """Starts a host unless one is running; returns its process."""
        if self.process is not None and self.process.poll() is None:
            return self.process
        self._forget()
        read_end, write_end = os.pipe()
        try:
            process = subprocess.Popen(
                [*python_command(), "-m", "experiments_manager.sweeps.trial_host", "--parent-pid", str(os.getpid()),
                 "--answers-fd", str(write_end)],
                cwd=self.working_dir, stdin=subprocess.PIPE, stdout=_stderr_fd(), pass_fds=(write_end,),
                start_new_session=True)  # signals come from the worker
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self.process, self._answers = process, os.fdopen(read_end, "r")
        if self.on_start is not None:
            self.on_start(process)
        return process

    def run(self, request: TrialRequest) -> int:
        """Trains `request` in the host; returns the trial's exit code (0 finished; 2 a settings problem; 75 try
        again later; 128 + signal stopped; a negative signal number when the host was killed by it)."""
        process = self.start()
        assert process.stdin is not None and self._answers is not None  # (started with both pipes)
        try:
            process.stdin.write(request.to_line().encode())
            process.stdin.flush()
            line = self._answer_line(process)
        except (BrokenPipeError, ValueError):  # it died before it read the request
            line = ""
        if not line:  # it died: its exit code is the trial's, as a trial process' was
            code = process.wait()
            self._forget()
            return code
        answer = json.loads(line)
        if not answer.get("reusable"):
            self.close()
        return int(answer["exit_code"])

    def _answer_line(self, process: subprocess.Popen[bytes]) -> str:
        """The host's answer line, or "" once the host is gone without one: a process a trial forked may hold the
        pipe's other end open after the host died, so its end of file is not awaited alone."""
        assert self._answers is not None  # (started)
        while True:
            ready, _, _ = select.select([self._answers], [], [], ANSWER_POLL_SECONDS)
            if ready:
                return self._answers.readline()
            if process.poll() is not None:  # gone: an answer written just before its exit is still read
                ready, _, _ = select.select([self._answers], [], [], 0)
                return self._answers.readline() if ready else ""

    def close(self) -> None:
        """Asks the host to leave (end of its input), waits for it (`CLOSE_SECONDS`), kills it if it does not."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if process.stdin is not None:
                process.stdin.close()
        try:
            process.wait(CLOSE_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self._forget()

    def _forget(self) -> None:
        if self._answers is not None:
            with contextlib.suppress(OSError):
                self._answers.close()
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                self.process.stdin.close()
        self.process, self._answers = None, None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments_manager.sweeps.trial_host",
                                     description="Trains a sweep's trials one after the other (started by a worker "
                                                 "of `experiments-manager sweep`; one JSON request per line on stdin).")
    parser.add_argument("--parent-pid", type=int, required=True, help="stop (checkpoint) when this process is gone")
    parser.add_argument("--answers-fd", type=int, required=True, help="the file descriptor answers are written to")
    arguments = parser.parse_args(argv)

    from experiments_manager.utils.logging_setup import configure_logging
    from experiments_manager.utils.native_noise import import_tensorflow_quietly
    from experiments_manager.utils.signals import stop_when_orphaned

    configure_logging()
    import_tensorflow_quietly()
    from experiments_manager import training  # noqa: F401 - imported once, for every trial

    stop_when_orphaned(arguments.parent_pid, f"the sweep process {arguments.parent_pid} of this trial",
                       ORPHAN_CHECK_SECS)
    os.set_inheritable(arguments.answers_fd, False)  # a program a trial runs does not hold the worker's pipe open
    answers = os.fdopen(arguments.answers_fd, "w")
    try:
        return _serve(answers)
    except KeyboardInterrupt:  # the worker passed Ctrl-C on while this host waited for a trial
        return 130


def _serve(answers: IO[str]) -> int:
    """Trains the requests on stdin one after the other, each answered on `answers`, until the input ends or a
    trial leaves the host unfit for the next one. A trial paused at a rung leaves its model here until the next
    request: its next rung, if that comes next, continues with it (`train_trial(warm=...)`)."""
    first_rss: Optional[int] = None
    kept: Optional[TrialTrained] = None  # the last trial's model, while it may be promoted here
    gradients: set[str] = set()  # the gradient functions registered before the model now trained (or kept)
    for served, line in enumerate(sys.stdin, start=1):
        request = TrialRequest.from_line(line)
        continued = kept if kept is not None and kept.experiment == _resolved(request.resume) else None
        if kept is not None and continued is None:  # another trial: the kept model goes
            clear_session(gradients)
        if continued is None:
            gradients = registered_gradients()
        kept, modules = None, set(sys.modules)
        trained, clean = _run_logged(request, continued)
        continued = None
        kept = trained if clean and trained.built is not None and trained.exit_code == 0 else None
        let_go_of_trial(modules, keep_model=kept is not None, gradients_before=gradients)
        rss = resident_bytes()
        first_rss = first_rss if first_rss is not None else rss
        reusable = clean and trained.exit_code in _REUSABLE_EXIT_CODES and served < MAX_TRIALS_PER_HOST and (
            rss - first_rss <= MAX_RSS_GROWTH_BYTES)
        try:
            answers.write(json.dumps({"exit_code": trained.exit_code, "reusable": reusable}) + "\n")
            answers.flush()
        except BrokenPipeError:  # the worker is gone: its trial was checkpointed (the orphan's stop)
            return 0
        if not reusable:
            return 0
    return 0


def _resolved(path: Optional[str]) -> Optional[str]:
    return str(Path(path).resolve()) if path else None


def _run_logged(request: TrialRequest, continued: Optional[TrialTrained]) -> tuple[TrialTrained, bool]:
    """(how the trial ended, whether the host is as clean as before it), its output in its log."""
    with _output_to(request.log), _environment(request.environment):
        try:
            return train_trial(request, warm=continued.built if continued is not None else None), True
        except KeyboardInterrupt:  # a stop signal outside training (SIGINT): as a process would end on it
            print_problems("stopped by SIGINT")
            return TrialTrained(130), False
        except BaseException:  # the trial's own crash: its record says failed, with this in its log
            import traceback

            traceback.print_exc()
            return TrialTrained(1), False


@contextlib.contextmanager
def _output_to(log: str) -> Iterator[None]:
    """File descriptors 1 and 2 (Python's prints and logs, TensorFlow's native lines, a crash's trace) appended to
    `log` within the block, then back to the host's own."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    target = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
    finally:
        os.close(target)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """`variables` set in this process' environment within the block, then as they were."""
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


if __name__ == "__main__":
    sys.exit(main())
