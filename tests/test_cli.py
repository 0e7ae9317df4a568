"""The command line starts fast and documents every command."""

import subprocess
import sys

import pytest

from experiments_manager.cli import SUBCOMMANDS

from conftest import cli_env


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from experiments_manager.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported by --help'\n"
        "assert 'keras' not in sys.modules, 'keras imported by --help'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "list" in result.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_command_has_help_without_importing_tensorflow(command):
    code = (
        "import sys\n"
        "from experiments_manager.cli import main\n"
        "try:\n"
        f"    main([{command!r}, '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert not {'tensorflow', 'confluent_kafka', 'hyperopt', 'flwr'} & set(sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: experiments-manager " + command in result.stdout


def test_bad_hparam_syntax_is_one_line_exit_2(run_cli):
    result = run_cli("train", "-u", "examples/regression/mysettings_curve_fitting.py", "--hparam", "no_equal_sign")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --hparam: 'no_equal_sign': expected key=value with key a Python name"
    ]


def test_resume_of_missing_folder_is_clear(run_cli):
    result = run_cli("train", "--resume", "does/not/exist")
    assert result.returncode == 2
    assert "does/not/exist: not an experiment folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_of_missing_folder_is_clear(run_cli):
    result = run_cli("list", "nowhere")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: nowhere: no such folder"
