"""Files a user (or a failing disk) damaged, met by `train --resume` through the real CLI: the newest checkpoint's
weights overwritten in place (same size) and a version's variables likewise. The resume says so in one warning each,
moves them aside, continues from the checkpoint before (the loss stays where training had it, not 1e12) and numbers
new versions past the damaged one."""

import signal

import numpy as np

import pytest

from conftest import cli_env, read_run, run_command, settings_variant, wait_for
from test_one_writer import PACED_BY_THE_TEST
from test_resume import OutputReader, checkpoints, the_experiment

EPOCHS = 5


def flip_bytes(path, count=64):
    """Overwrites `count` bytes in the middle of a file with their complement: the size stays the same."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + count] = bytes(byte ^ 0xFF for byte in data[middle:middle + count])
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.claim(
    'a damaged checkpoint (overwritten in place, truncated, a missing file, no state.json) is set aside with one '
    'warning; the previous one is restored bit for bit; numbers go on past it; pruning keeps good ones',
    note='(through the CLI: the loss stays where training had it)')
@pytest.mark.claim('a damaged version is set aside at a resume and never served')
def test_damaged_checkpoint_and_version_are_set_aside_and_the_resume_continues_from_the_good_ones(workdir, start_cli):
    go = workdir / "go"
    go.write_text("2")
    settings = settings_variant(workdir, "damaged.py", ["save_only_last_best_model = False",
                                                        PACED_BY_THE_TEST.format(go=str(go))])
    first = start_cli("train", "-u", str(settings), "--hparam", f"nbEpoch={EPOCHS}", warm=True)
    output = OutputReader(first)
    root = wait_for(lambda: the_experiment(workdir), 120, "the experiment folder")
    wait_for(lambda: len(checkpoints(root)) >= 2 or first.poll() is not None, 180, "two checkpoints")
    wait_for(lambda: (root / "exported_models" / "3").is_dir() or first.poll() is not None, 60, "version 3")
    first.send_signal(signal.SIGTERM)
    go.write_text("99")
    assert first.wait(timeout=120) == 128 + signal.SIGTERM, output.text()
    stopped = read_run(root)
    newest = max(path.parent for path in checkpoints(root))
    flip_bytes(newest / "model.weights.h5")
    flip_bytes(next((root / "exported_models" / "3" / "variables").glob("variables.data-*")))

    resumed = run_command(["train", "--resume", str(root)], cwd=workdir, env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{newest}: damaged (model.weights.h5 differs from what was written (SHA-256)" in resumed.stderr
    assert "exported_models/3: damaged (variables/variables.data" in resumed.stderr
    assert (root / "checkpoints" / f"damaged-{newest.name}").is_dir() and (root / "exported_models" / "damaged-3").is_dir()
    info = read_run(root)
    assert info["status"] == "finished" and info["epochs_completed"] == EPOCHS
    history = np.genfromtxt(root / "history.csv", delimiter=",", names=True)
    assert list(history["epoch"].astype(int)) == list(range(1, EPOCHS + 1))
    assert history["loss"][-1] < 2 * history["loss"][stopped["epochs_completed"] - 2]  # no jump to garbage weights
    assert 3 not in info["exported_versions"] and min(v for v in info["exported_versions"] if v > 2) > 3
