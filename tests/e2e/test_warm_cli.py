"""The tests' warm interpreter (tests/warm_cli.py) against a new one: a command forked from it is the command a user
runs, and its launcher stands for it (exit code, stop signals, death)."""

import os
import re
import select
import signal
import subprocess

import pytest

from conftest import (HELD_AT_THE_SECOND_EPOCH, RAN_AS, REGRESSION_SETTINGS, STARTUP_CLI_ENV, cli_command, cli_env,
                      read_run, run_command, settings_variant, wait_for)
from test_federated_deployed import parent_of
from test_multiworker import experiments_in, layout
from warm_cli import warm_interpreter


@pytest.fixture
def warm():
    interpreter = warm_interpreter(STARTUP_CLI_ENV)
    if interpreter is None:
        pytest.skip("EM_TEST_FRESH_PROCESSES=1: every command runs in a new interpreter")
    return interpreter


def _gone(pid):
    """The process `pid` has ended (and been reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _said(result, run):
    """The command's output with the run's folder name and the numbers folded: what a user reads."""
    text = (result.stdout + result.stderr).replace(run.name, "RUN")
    return [re.sub(r"\d+(\.\d+)?", "N", line) for line in text.splitlines()]


@pytest.mark.slow
@pytest.mark.claim("a command line forked from the tests' warm interpreter behaves as one in a new interpreter: the "
                   "same exit code, output, hints and run folder; its launcher passes on stop signals and takes the "
                   "command with it when killed")
def test_a_command_forked_from_the_warm_interpreter_says_and_writes_what_a_new_interpreter_does(workdir, warm):
    arguments = ["train", "-u", REGRESSION_SETTINGS, "--hparam", "nbEpoch=2"]
    fresh = subprocess.run(cli_command(*arguments), cwd=workdir, env=cli_env(), capture_output=True, text=True,
                           timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    (fresh_run,) = experiments_in(workdir)
    forked = run_command(arguments, workdir, capture_output=True, text=True, timeout=300)
    assert forked.returncode == 0, forked.stderr
    (forked_run,) = set(experiments_in(workdir)) - {fresh_run}

    assert layout(forked_run) == layout(fresh_run)  # no module of the warm process in the code snapshot
    assert _said(forked, forked_run) == _said(fresh, fresh_run)
    assert f"extend with:       {RAN_AS} train --resume" in forked.stdout + forked.stderr
    forked_info, fresh_info = read_run(forked_run), read_run(fresh_run)
    assert forked_info["command"] == fresh_info["command"] == ["python", "-m", "experiments_manager", *arguments]
    assert forked_info["attempts"][-1]["code"].keys() == fresh_info["attempts"][-1]["code"].keys()

    mistyped = ["train", "-u", "nope.py"]
    refused = [run(mistyped) for run in (
        lambda words: subprocess.run(cli_command(*words), cwd=workdir, env=cli_env(), capture_output=True, text=True),
        lambda words: run_command(words, workdir, capture_output=True, text=True))]
    assert [(result.returncode, result.stderr) for result in refused] == [(2, refused[0].stderr)] * 2


@pytest.mark.slow
@pytest.mark.claim("a command line forked from the tests' warm interpreter behaves as one in a new interpreter: the "
                   "same exit code, output, hints and run folder; its launcher passes on stop signals and takes the "
                   "command with it when killed")
def test_the_launcher_passes_on_a_sigterm_and_takes_the_command_with_it_when_killed(workdir, warm):
    settings = settings_variant(workdir, "held.py", HELD_AT_THE_SECOND_EPOCH)
    (workdir / "hold").touch()

    def held_run():
        launcher = subprocess.Popen(warm.cli_command("train", "-u", str(settings), "--hparam", "nbEpoch=3"),
                                    cwd=workdir, env=cli_env(), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
        known = set(experiments_in(workdir))
        run = wait_for(lambda: set(experiments_in(workdir)) - known, 120, "the run's folder")
        (run,) = run
        wait_for(lambda: read_run(run).get("epochs_completed") == 1, 120, "the first epoch, then the hold")
        return launcher, run

    launcher, stopped = held_run()
    launcher.send_signal(signal.SIGTERM)
    (workdir / f"release-{read_run(stopped)['attempts'][-1]['pid']}").touch()  # the signal stops it at the next step
    stderr = launcher.communicate(timeout=120)[1]
    assert launcher.returncode == 128 + signal.SIGTERM, stderr
    assert read_run(stopped)["status"] == "interrupted", stderr

    launcher, killed = held_run()
    child = read_run(killed)["attempts"][-1]["pid"]
    assert child != launcher.pid
    launcher.kill()
    launcher.wait()

    wait_for(lambda: _gone(child), 30, f"the command (pid {child}) to die with its launcher")


PROBE = """import os, sys, time
answers = os.fdopen(int(sys.argv[1]), "w")
first = os.getppid()
print(os.getpid(), first, sys.argv[2:], __name__, file=answers, flush=True)
deadline = time.monotonic() + 10
while os.getppid() == first and time.monotonic() < deadline:  # until its parent is gone
    time.sleep(0.05)
print(os.getppid(), file=answers, flush=True)
while not os.path.exists("release") and time.monotonic() < deadline + 20:  # alive while the test looks
    time.sleep(0.05)
"""


def _line(stream, what, timeout=60):
    """The next line of `stream`, or a failure after `timeout` seconds (the writer hung or died)."""
    assert select.select([stream], [], [], timeout)[0], f"no {what} in {timeout} s"
    return stream.readline()


@pytest.mark.claim("the processes the package starts (a sweep's trial hosts, a run's local workers) fork from the "
                   "tests' warm interpreter too, through EXPERIMENTS_MANAGER_PYTHON: with the descriptors they were "
                   "given and their starter as their parent (`os.getppid()`, followed when it dies)")
def test_a_module_forked_through_the_launcher_has_its_descriptors_and_its_starter_as_parent(tmp_path, warm):
    """As a trial host is started: `-m MODULE`, an answers pipe passed on as a descriptor other than 0-2, its
    parent's pid watched. A shell starts it and ends: its parent becomes the launcher's new one, as a real child's
    would."""
    (tmp_path / "parent_probe.py").write_text(PROBE)
    read_end, write_end = os.pipe()
    shell = subprocess.Popen(["sh", "-c", '"$@" >/dev/null & echo $!; read stop', "sh", *warm.command(), "-m",
                              "parent_probe", str(write_end), "a", "b"], cwd=tmp_path,
                             env=warm.environment(cli_env()), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             pass_fds=(write_end,), text=True)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as answers:
            launcher = int(_line(shell.stdout, "launcher's pid"))
            probe, parent, rest = _line(answers, "probe's first line").split(" ", 2)
            assert (int(parent), rest) == (shell.pid, "['a', 'b'] __main__\n")  # its starter, as a real child's
            assert int(probe) != launcher and parent_of(int(probe)) == warm.process.pid  # forked from the warm one
            shell.communicate("stop\n", timeout=30)  # the shell ends: the launcher and the probe go on
            assert int(_line(answers, "probe's new parent")) == parent_of(launcher) != shell.pid
    finally:
        (tmp_path / "release").touch()


GIL_HOLDER = """import ctypes, os, sys
with open(sys.argv[1], "w") as answer:
    print(os.getpid(), file=answer, flush=True)
ctypes.PyDLL(None).pause()  # native code holding the GIL, as TensorFlow waiting for a peer that never comes
"""


@pytest.mark.claim("a command line forked from the tests' warm interpreter behaves as one in a new interpreter: the "
                   "same exit code, output, hints and run folder; its launcher passes on stop signals and takes the "
                   "command with it when killed", note="(also a command holding the GIL in native code)")
def test_a_command_holding_the_gil_in_native_code_dies_with_its_killed_launcher(tmp_path, warm):
    """Its own watch of the launcher is a Python thread, which never runs then: the warm process kills it (a chief
    that outlived its launcher held a test's pipes open until the test's timeout)."""
    (tmp_path / "gil_holder.py").write_text(GIL_HOLDER)
    launcher = subprocess.Popen([*warm.command(), "-m", "gil_holder", str(tmp_path / "pid")], cwd=tmp_path,
                                env=warm.environment(cli_env()))
    try:
        child = int(wait_for(lambda: (tmp_path / "pid").is_file() and (tmp_path / "pid").read_text().strip(), 60,
                             "the command's pid"))
        assert parent_of(child) == warm.process.pid  # forked from the warm one
    finally:
        launcher.kill()
        launcher.wait()

    wait_for(lambda: _gone(child), 10, f"the command (pid {child}) to die with its launcher")
