"""`warm_cli_launcher.py SOCKET ARGS...` runs `python -m experiments_manager ARGS` in a child of the warm
interpreter (tests/warm_cli.py) as if it were this process: its streams, folder, environment and arguments; this
process's exit code is the child's (or it dies of the child's signal); the stop signals it gets are passed on; its
death kills the child. Standard library only (started with `-I -S`). Where the warm process (listening at SOCKET)
cannot be reached, the command runs in a new interpreter instead.
"""

import array
import json
import os
import signal
import socket
import sys

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def main() -> None:
    path, arguments = sys.argv[1], sys.argv[2:]
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
        for number in FORWARDED:
            signal.signal(number, signal.SIG_DFL)
        os.execv(sys.executable, [sys.executable, "-m", "experiments_manager", *arguments])
    request = json.dumps({"argv": arguments, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    connection.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
    replies = connection.makefile()
    first = replies.readline()
    if first:
        child["pid"] = json.loads(first)["pid"]
        for number in child["pending"]:
            pass_on(number, None)
    line = replies.readline() if first else ""
    if not line:  # the warm process died (or refused the request) before the child ended
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
