"""`warm_cli_launcher.py SOCKET -m MODULE ARGS...` runs `python -m MODULE ARGS` in a child of the warm interpreter
(tests/warm_cli.py) as if it were this process: its streams and the other descriptors it was given, folder,
environment and arguments, and its parent (the child's `os.getppid()` is this process's, followed as it changes);
this process's exit code is the child's (or it dies of the child's signal); the stop signals it gets are passed on;
its death kills the child. With EM_WARM_RUN_PID_FILE set (not passed on), the run's pid is written there: the
child's, or this process's own when a new interpreter runs the command, so a test can kill or read the run itself.
Standard library only (started with `-I -S`). Arguments other than `-m MODULE ...`, a
warm process (listening at SOCKET) that cannot be reached or refuses, or a child that fails before the command
begins: a new interpreter runs them instead. The package's own
processes (a sweep's trial hosts, a run's local workers) start through it where EXPERIMENTS_MANAGER_PYTHON names it.
"""

import array
import json
import os
import signal
import socket
import sys
import threading
import time
from typing import NoReturn, Optional, Sequence

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
RUN_PID_VARIABLE = "EM_WARM_RUN_PID_FILE"  # where to write the run's pid (tests/warm_cli.py: ForkedRun)
PARENT_CHECK_SECONDS = 0.2  # how soon the child's `os.getppid()` follows this process's new parent (its own died)


def given_descriptors() -> list[int]:
    """The descriptors this process was started with, 0, 1 and 2 first, then those its parent passed on besides
    (a trial host's answers pipe)."""
    others = []
    for number in sorted(int(name) for name in os.listdir("/proc/self/fd") if int(name) > 2):
        try:
            os.fstat(number)
        except OSError:  # the listing's own, closed since
            continue
        others.append(number)
    return [0, 1, 2, *others]


def tell_run_pid(pid_file: Optional[str], pid: int) -> None:
    """Writes the run's `pid` to `pid_file` (EM_WARM_RUN_PID_FILE's, if it was set), whole (a reader never sees
    part of it)."""
    if pid_file:
        with open(f"{pid_file}.part", "w") as handle:
            handle.write(str(pid))
        os.rename(f"{pid_file}.part", pid_file)


def exec_new_interpreter(arguments: list[str], pid_file: Optional[str], pending: Sequence[int] = ()) -> NoReturn:
    """Becomes `python ARGUMENTS` (its pid told to `pid_file`); a stop signal already received (`pending`) ends this
    process first, as it would have ended a new interpreter that had not yet set its handlers."""
    tell_run_pid(pid_file, os.getpid())  # (exec keeps the pid)
    for number in FORWARDED:
        signal.signal(number, signal.SIG_DFL)
    for number in pending:
        os.kill(os.getpid(), number)
    os.execv(sys.executable, [sys.executable, *arguments])


def tell_new_parents(connection: socket.socket, parent: int) -> None:
    """Sends the child `parent N` each time this process's parent changes (a parent that died: the child's watch
    of its parent sees it go, as it would as the parent's own child)."""
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        now = os.getppid()
        if now != parent:
            parent = now
            try:
                connection.sendall(f"parent {parent}\n".encode())
            except OSError:
                return


def main() -> None:
    path, arguments = sys.argv[1], sys.argv[2:]
    pid_file = os.environ.pop(RUN_PID_VARIABLE, None)  # for the test that started this process, not its command
    if len(arguments) < 2 or arguments[0] != "-m":
        exec_new_interpreter(arguments, pid_file)
    descriptors = given_descriptors()
    child = {"pid": None, "pending": []}  # a stop signal that comes before the child's pid is passed on once known

    def pass_on(number: int, _frame: object) -> None:
        if child["pid"] is None:
            child["pending"].append(number)
            return
        try:
            os.kill(child["pid"], number)
        except ProcessLookupError:  # it has ended: its status is on its way
            pass

    for number in FORWARDED:
        signal.signal(number, pass_on)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
    except OSError:  # no warm process: a new interpreter, as without this launcher
        exec_new_interpreter(arguments, pid_file, child["pending"])
    parent = os.getppid()
    request = json.dumps({"module": arguments[1], "argv": arguments[2:], "descriptors": descriptors,
                          "parent": parent, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    connection.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", descriptors))])
    threading.Thread(target=tell_new_parents, args=(connection, parent), daemon=True).start()
    replies = connection.makefile()
    first = replies.readline()
    reply = json.loads(first) if first else {}
    if "pid" not in reply:  # the request refused, or the child failed before the command began: nothing ran
        exec_new_interpreter(arguments, pid_file, child["pending"])
    child["pid"] = reply["pid"]
    tell_run_pid(pid_file, child["pid"])
    for number in child["pending"]:
        pass_on(number, None)
    line = replies.readline()
    if not line:  # the warm process died before the child ended
        print("warm_cli_launcher: the warm interpreter went away before the command ended", file=sys.stderr)
        sys.exit(70)
    status = json.loads(line)["status"]
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number not in (signal.SIGKILL, signal.SIGSTOP):  # (those cannot be handled, so need no reset)
            signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    sys.exit(os.waitstatus_to_exitcode(status))


main()
