"""The `experiments-manager` command line. Each sub-command is its own module, registered in
`experiments_manager.commands`; TensorFlow is imported only by commands that need it."""

import argparse
import atexit
import difflib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn, Optional

from experiments_manager import commands
from experiments_manager.utils.command_name import command_name
from experiments_manager.utils.environment_failures import environment_failure_line
from experiments_manager.utils.errors import EXIT_TEMPFAIL, EXIT_USER_ERROR, UserInputError, print_problems
from experiments_manager.utils.interpreter import python_command
from experiments_manager.utils.lease_holder import lease_timeout
from experiments_manager.utils.logging_setup import configure_logging

DESCRIPTION = "Train, export and track TensorFlow/Keras experiments from one settings file."
SUBCOMMANDS = commands.NAMES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=command_name(), description=DESCRIPTION)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands.COMMANDS:
        command.add_parser(subparsers)
    return parser


def _with_default_command(argv: Sequence[str]) -> list[str]:
    """The original framework's spellings: no sub-command trains, `--predict_stream` predicts,
    `--start_server` serves."""
    argv = list(argv)
    if not argv or argv[0] in SUBCOMMANDS or argv[0] in ("-h", "--help"):
        return argv
    if not argv[0].startswith("-"):  # a word where the command goes, but no command's name (`trian`)
        close = difflib.get_close_matches(argv[0], SUBCOMMANDS, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f" (commands: {', '.join(SUBCOMMANDS)})"
        raise UserInputError(f"{argv[0]!r}: not a command{hint}")
    if "--start_server" in argv:
        return ["serve"] + [argument for argument in argv if argument != "--start_server"]
    if any(argument.split("=", 1)[0] == "--predict_stream" for argument in argv):
        return ["predict"] + argv
    return ["train"] + argv


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line; returns the exit code."""
    try:
        argv = _with_default_command(sys.argv[1:] if argv is None else argv)
    except UserInputError as error:
        print(f"usage: {command_name()} COMMAND ... (see {command_name()} --help)", file=sys.stderr)
        print_problems(error.problems)
        return EXIT_USER_ERROR
    parser = build_parser()
    arguments = parser.parse_args(argv)
    configure_logging()
    try:
        if arguments.command is None:
            parser.print_help()
            return 2
        lease_timeout()  # the environment every command that writes reads: refused before anything is written
        python_command()  # and what starts the processes a command starts: EXPERIMENTS_MANAGER_PYTHON
        return commands.command_named(arguments.command).run(arguments, argv)
    except UserInputError as error:
        print_problems(error.problems)
        return getattr(error, "exit_code", EXIT_USER_ERROR)  # 75 for a folder another run holds: try again later
    except BrokenPipeError:  # `experiments-manager list ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error as Python flushes at exit
        return 128 + signal.SIGPIPE
    except OSError as error:  # a full disk, a quota, a read-only file system: one line, not a traceback
        line = environment_failure_line(error)
        if line is None:
            raise
        print_problems(line)
        return EXIT_TEMPFAIL
    except KeyboardInterrupt:  # what was interrupted has said so (a training run: run.json, "resume with")
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return 128 + signal.SIGINT


def run_and_exit() -> NoReturn:
    """The console entry (`experiments-manager`, `python -m experiments_manager`): exits with `main`'s code.

    After a Ctrl-C (exit code 130) or an interruption to resume later (75) a process that imported TensorFlow leaves
    without the interpreter's native teardown: TensorFlow's native threads still running then (a tf.data iterator's,
    interrupted mid-epoch) can make it abort ("terminate called without an active exception": SIGABRT, exit code -6,
    not 130), and a multi-worker chief whose worker's node hung waits in it for that worker (its coordination
    service's shutdown), so Slurm saw it killed for the node's failure, not its 75, and the batch script could not
    requeue it. What Python does at
    exit before that teardown is done first, in its order: the threads that are not daemons are waited for (a
    drawing of training_curves.png, a version being exported), the `atexit` handlers run (Ray's shutdown of a
    simulated federation, the log handlers' flush), the streams are flushed. Any other exit is Python's own.
    """
    code = main()
    if code in (128 + signal.SIGINT, EXIT_TEMPFAIL) and "tensorflow" in sys.modules:
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):  # a closed or gone stream: nothing more to say there
                pass
        os._exit(code)
    sys.exit(code)
