"""`python_command`: what starts the tool's own Python processes (EXPERIMENTS_MANAGER_PYTHON)."""

import sys

import pytest

from experiments_manager.cli import main
from experiments_manager.utils.errors import UserInputError
from experiments_manager.utils.interpreter import PYTHON_VARIABLE, python_command


@pytest.mark.claim('`EXPERIMENTS_MANAGER_PYTHON` starts the processes the tool starts (split as a shell would); '
                   'unset or blank: this interpreter; a value that cannot be split or names no program: one line, '
                   'exit 2')
@pytest.mark.parametrize("value, expected", [
    (None, [sys.executable]),
    ("  ", [sys.executable]),
    ("nice -n 10 " + sys.executable, ["nice", "-n", "10", sys.executable]),
    (f"'{sys.executable}' -X dev", [sys.executable, "-X", "dev"]),
])
def test_the_variable_is_split_as_a_shell_would_and_defaults_to_this_interpreter(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(PYTHON_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(PYTHON_VARIABLE, value)
    assert python_command() == expected


@pytest.mark.claim('`EXPERIMENTS_MANAGER_PYTHON` starts the processes the tool starts (split as a shell would); '
                   'unset or blank: this interpreter; a value that cannot be split or names no program: one line, '
                   'exit 2')
@pytest.mark.parametrize("value, problem", [
    ("nice 'python", "expected a command that runs Python (split as a shell would), got \"nice 'python\": "
                     "No closing quotation"),
    ("/nowhere/python -u", "expected a command that runs Python, got '/nowhere/python -u': no program "
                           "'/nowhere/python' (an executable file, or one on PATH)"),
])
def test_a_value_that_cannot_start_python_is_one_line_naming_the_variable_and_every_command_refuses_it(
        monkeypatch, capsys, value, problem):
    monkeypatch.setenv(PYTHON_VARIABLE, value)
    with pytest.raises(UserInputError) as refused:
        python_command()
    assert refused.value.problems == [f"{PYTHON_VARIABLE}: {problem}"]
    assert main(["list", "nowhere"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {PYTHON_VARIABLE}: {problem}"]
