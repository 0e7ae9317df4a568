"""run.json's attempts and code identity, through the real CLI: each attempt recorded (host, pid, start, end, exit
status, reason, code hashes), the top level describing the latest only; a resume whose code changed (a module the
model file imports, relu -> tanh) is refused in one line, and accepted with --accept-code-change."""

import json
import os
import signal
import subprocess

import pytest

from conftest import cli_command, cli_env, read_run, run_command, settings_variant, wait_for
from experiments_manager.run import lifecycle
from test_one_writer import PACED_BY_THE_TEST
from test_resume import OutputReader, checkpoints, the_experiment

EPOCHS = 3


def model_with_a_helper(example):
    """The example's model file, its activation taken from a module of the user's beside it."""
    source = example.read_text().replace("activation='relu'", "activation=ACTIVATION")
    return source.replace("import tensorflow as tf", "import tensorflow as tf\nfrom activations_of_mine import ACTIVATION")


def _env(folder):
    env = cli_env()
    env["PYTHONPATH"] = f"{folder}{os.pathsep}{env['PYTHONPATH']}"
    return env


@pytest.mark.slow
@pytest.mark.claim(
    'run.json records every attempt; the top level describes the latest; changed code is refused unless '
    '`--accept-code-change`',
    note='(a helper module the model imports, relu -> tanh)')
def test_attempts_are_recorded_and_changed_code_is_refused_unless_accepted(workdir):
    folder = workdir / "examples" / "regression"
    (folder / "activations_of_mine.py").write_text("ACTIVATION = 'relu'\n")
    (folder / "model_with_a_helper.py").write_text(model_with_a_helper(folder / "model_curve_fitting.py"))
    go = workdir / "go"
    settings = settings_variant(workdir, "helper.py", [
        "model_file = 'examples/regression/model_with_a_helper.py'", PACED_BY_THE_TEST.format(go=str(go))])
    first = subprocess.Popen(cli_command("train", "-u", str(settings), "--hparam", f"nbEpoch={EPOCHS}"),
                             cwd=workdir, env=_env(folder), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = OutputReader(first)
    root = wait_for(lambda: the_experiment(workdir), 120, "the experiment folder")
    wait_for(lambda: checkpoints(root) or first.poll() is not None, 180, "the first checkpoint")
    first.send_signal(signal.SIGTERM)
    go.write_text("99")  # out of the wait in its epoch's start: the signal stops it at the next step
    assert first.wait(timeout=120) == 128 + signal.SIGTERM, output.text()
    stopped = read_run(root)
    assert stopped["status"] == "interrupted" and "SIGTERM" in stopped["reason"]
    [attempt] = stopped["attempts"]
    helper = str((folder / "activations_of_mine.py").resolve())
    assert attempt["pid"] == first.pid and attempt["exit_code"] == 143 and attempt["ended"]
    assert helper in attempt["code"] and "model_with_a_helper.py" in attempt["code"]  # the copy, inside the run

    (folder / "activations_of_mine.py").write_text("ACTIVATION = 'tanh'\n")
    refused = run_command(["train", "--resume", str(root)], cwd=workdir, env=_env(folder),
                          capture_output=True, text=True, timeout=120)
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert refused.returncode == 2 and len(errors) == 1, refused.stderr
    assert f"{helper} (changed)" in errors[0] and "--accept-code-change" in errors[0]
    assert read_run(root) == stopped  # refused before anything was written

    accepted = run_command(["train", "--resume", str(root), "--accept-code-change"], cwd=workdir,
                           env=_env(folder), capture_output=True, text=True, timeout=300)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    info = read_run(root)
    assert info["status"] == "finished" and info["epochs_completed"] == EPOCHS
    assert not {"reason", "exit_code", "error"} & set(info)  # the top level describes the latest attempt only
    first_attempt, second_attempt = info["attempts"]
    assert first_attempt == attempt
    assert second_attempt["number"] == 2 and second_attempt["status"] == "finished"
    assert second_attempt["exit_code"] == 0 and second_attempt["accepted_code_change"] == [f"{helper} (changed)"]
    assert second_attempt["code"][helper] != first_attempt["code"][helper]
    assert second_attempt["command"][-3:] == ["--resume", str(root), "--accept-code-change"]


def test_a_run_of_an_older_engine_gets_its_history_as_attempt_1(tmp_path):
    from experiments_manager.run.experiment import Experiment

    old = {"status": "interrupted", "command": ["train", "-u", "s.py"], "host": "node-3", "started": "2026-11-01T10:00:00",
           "ended": "2026-11-01T11:00:00", "reason": "received SIGUSR1", "exit_code": 138, "git_commit": "abc"}
    (tmp_path / "run.json").write_text(json.dumps(old))
    info = lifecycle.resumed(Experiment(tmp_path), ["train", "--resume", str(tmp_path)])
    first, second = info["attempts"]
    assert first["number"] == 1 and first["command"] == old["command"] and first["host"] == "node-3"
    assert first["status"] == "interrupted" and first["exit_code"] == 138 and first["reason"] == "received SIGUSR1"
    assert second["number"] == 2 and second["status"] == "running"
    assert "reason" not in info and "exit_code" not in info
