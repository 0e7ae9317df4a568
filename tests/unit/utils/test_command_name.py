"""Hints name the command the user ran: `python -m experiments_manager` when run so, else the console script."""

import subprocess
import sys

from conftest import cli_env
from experiments_manager.utils.command_name import CONSOLE_SCRIPT, command_name


def test_a_python_session_is_given_the_console_script() -> None:
    assert command_name() == CONSOLE_SCRIPT  # pytest's __main__ is not the package's


def test_python_m_is_given_back_as_run() -> None:
    usage = subprocess.run([sys.executable, "-m", "experiments_manager", "trian"], capture_output=True, text=True,
                           env=cli_env(), timeout=60)
    assert usage.returncode == 2 and usage.stderr.startswith(
        "usage: python -m experiments_manager COMMAND ... (see python -m experiments_manager --help)"), usage.stderr
