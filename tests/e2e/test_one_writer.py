"""One writer per experiment, through the real CLI: a `train --resume` of a live run is refused in one line (exit 75)
and the live run's history stays whole; of two resumes started at once (a double requeue) one trains, the other
is refused, and the run ends with every epoch once."""

import subprocess

import numpy as np

import pytest

from conftest import cli_command, cli_env, read_run, run_command, settings_variant, wait_for
from test_resume import OutputReader, checkpoints, the_experiment

EPOCHS = 5
# The example whose epoch N (counted from 0) starts only once the test has written N or more to a file: the test
# decides when each writer trains, instead of hoping a run is slow enough.
PACED_BY_THE_TEST = """
early_stopping_patience = 50

class _PacedByTheTest(tf.keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        import pathlib, time
        go, deadline = pathlib.Path({go!r}), time.monotonic() + 180
        while int((go.read_text() if go.exists() else "") or 0) < epoch:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test did not let epoch {{epoch}} start within 180 s")
            time.sleep(0.05)

def addon_callbacks(model, train_samples, val_samples):
    return {{"paced_by_the_test": _PacedByTheTest()}}
"""


def _paced_run(workdir, start_cli):
    """A training run paced by the test, once its first checkpoint is written: (the go file, the process, its
    output reader, the experiment folder)."""
    go = workdir / "go"
    settings = settings_variant(workdir, "paced.py", [PACED_BY_THE_TEST.format(go=str(go))])
    process = start_cli("train", "-u", str(settings), "--hparam", f"nbEpoch={EPOCHS}", warm=True)
    output = OutputReader(process)
    root = wait_for(lambda: the_experiment(workdir), 120, "the experiment folder")
    wait_for(lambda: checkpoints(root) or process.poll() is not None, 180, "the first checkpoint")
    assert process.poll() is None, output.text()
    return go, process, output, root


@pytest.mark.slow
@pytest.mark.claim(
    'one writer per experiment: a resume of a live run is refused in one line naming the holder, exit 75; of two '
    'resumes at once one trains',
    note='(the live run paced by the test; then kill -9 and two resumes racing: exit codes {0, 75}, epochs 1..N '
         'once)')
def test_a_second_writer_is_refused_and_of_two_resumes_at_once_one_trains(workdir, start_cli):
    go, first, first_output, root = _paced_run(workdir, start_cli)

    second = run_command(["train", "--resume", str(root)], cwd=workdir, env=cli_env(),
                         capture_output=True, text=True, timeout=120)
    errors = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
    assert second.returncode == 75, second.stdout + second.stderr
    assert len(errors) == 1 and f"another run writes this experiment: pid {first.pid} on host" in errors[0], \
        second.stderr
    assert "Traceback" not in second.stderr

    go.write_text("1")
    wait_for(lambda: len(checkpoints(root)) >= 2 or first.poll() is not None, 180, "the second checkpoint")
    first.kill()  # a node lost mid-run: its lease stays behind, naming a dead pid
    first.wait(timeout=30)
    assert (root / "lease.json").is_file()

    racers = [subprocess.Popen(cli_command("train", "--resume", str(root)), cwd=workdir, env=cli_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    wait_for(lambda: any(racer.poll() is not None for racer in racers), 180, "one of them to be refused")
    go.write_text("99")  # the winner waits at its first epoch until then: the loser met a live writer
    results = []
    for racer in racers:
        out, err = racer.communicate(timeout=300)
        results.append((racer.returncode, out, err))
    assert sorted(code for code, *_ in results) == [0, 75], results
    winner = next(err for code, _, err in results if code == 0)
    loser = next(err for code, _, err in results if code == 75)
    assert "took over the lease: the writer that held it is gone: pid" in winner
    assert "another run writes this experiment" in loser and "Traceback" not in loser

    info = read_run(root)
    assert info["status"] == "finished" and info["epochs_completed"] == EPOCHS, info
    assert "error" not in info
    history = np.genfromtxt(root / "history.csv", delimiter=",", names=True)
    assert list(history["epoch"].astype(int)) == list(range(1, EPOCHS + 1))
    assert not (root / "lease.json").exists()  # released at the end


def _snapshot(root):
    """Every file below the run's folder with its content hash. Left out: the lease (the new holder's) and the
    frozen writer's temporary files (a write in flight when it froze: gone or kept, never committed; the next
    holder removes a dead pid's)."""
    import hashlib

    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file() and not path.name.startswith("lease.json")
            and not (path.name.startswith(".") and path.name.endswith(".tmp"))}


@pytest.mark.slow
@pytest.mark.claim(
    'a frozen holder whose lease was taken over writes nothing more when it wakes: no history row, no log line, no '
    'TensorBoard event, no checkpoint, no run.json; one line, exit 75',
    note='(SIGSTOP past the fence, the lease taken by "another node", SIGCONT: every file of the folder compared)')
def test_a_frozen_writer_whose_lease_was_taken_writes_nothing_when_it_wakes(workdir, start_cli, monkeypatch):
    """A frozen node (every process stopped, its heartbeat too) loses its lease to another node; when it wakes in
    the middle of an epoch, the fence stops it at its next step, before history.csv, train.log, the TensorBoard
    logs, a checkpoint, a version or run.json change."""
    import json
    import signal
    import time

    monkeypatch.setenv("EXPERIMENTS_MANAGER_LEASE_TIMEOUT", "10")  # the floor: fenced after 6.7 s without a beat
    go, run, output, root = _paced_run(workdir, start_cli)
    wait_for(lambda: (root / "exported_models" / "1").is_dir() or run.poll() is not None, 180, "version 1")
    assert run.poll() is None, output.text()

    run.send_signal(signal.SIGSTOP)  # the node freezes while epoch 2 waits to start
    frozen = time.monotonic()
    lease = json.loads((root / "lease.json").read_text())
    other = {**lease, "host": "node-17", "boot_id": "another-boot", "pid": 12, "token": "node-17's",
             "heartbeat": time.time()}
    (root / "lease.json").write_text(json.dumps(other))  # taken over by a run on another node
    go.write_text("99")
    before = _snapshot(root)
    time.sleep(max(0.0, 10 * 2 / 3 + 0.5 - (time.monotonic() - frozen)))  # (a frozen node: nothing to wait on)
    run.send_signal(signal.SIGCONT)
    run.wait(timeout=120)
    text = output.text()
    assert run.returncode == 75, text
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "node-17" in errors[0] and "stopping without writing more" in errors[0], text
    assert _snapshot(root) == before, "the frozen writer wrote after it lost the lease"
    assert json.loads((root / "lease.json").read_text())["token"] == "node-17's"
