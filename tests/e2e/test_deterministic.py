"""`deterministic = True`: a run killed anywhere and resumed ends with weights bitwise identical to an uninterrupted
run, compared array by array: killed (SIGKILL) in the middle of an epoch, and while a version is written."""

import subprocess

import numpy as np

import pytest

from conftest import cli_command, cli_env, run_command, settings_variant, wait_for
from test_resume import OutputReader, kill_when_seen

EPOCHS = 4
# the example, deterministic, with a dropout layer (a random mask every step) and a version every epoch; with
# EM_TEST_HOLD_AT=<file> the run stops in the middle of epoch 3 (step 10), says so in that file and waits to be killed
DETERMINISTIC = """
deterministic = True
save_only_last_best_model = False
early_stopping_patience = 50
import os as _os, pathlib as _pathlib, time as _time

class _HoldMidEpoch(tf.keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        hold = _os.environ.get("EM_TEST_HOLD_AT")
        if hold and self.epoch == 2 and batch == 10:
            _pathlib.Path(hold).write_text("held")
            _time.sleep(120)  # killed long before

def addon_callbacks(model, train_samples, val_samples):
    return {"hold_mid_epoch": _HoldMidEpoch()}
"""
DROPOUT_MODEL = """
import tensorflow as tf

def model(usersettings):
    inputs = tf.keras.Input(shape=(1,), name='input')
    h = tf.keras.layers.Dense(32, activation='relu')(inputs)
    h = tf.keras.layers.Dropout(0.2)(h)
    h = tf.keras.layers.Dense(32, activation='relu')(h)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(1, name='prediction')(h), name='curve_fitting')
"""


def final_arrays(root):
    """The arrays of the run's last checkpoint: the model's weights (HDF5) and every optimizer variable (EMA too)."""
    import h5py

    newest = max((root / "checkpoints").glob("ckpt-*"))
    arrays = {}
    with h5py.File(newest / "model.weights.h5", "r") as weights:
        weights.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset)
                           else None)
    with np.load(newest / "optimizer.npz") as optimizer:
        arrays.update({f"optimizer/{key}": optimizer[key] for key in optimizer.files})
    return arrays


def train(workdir, settings, env=None, wait=True):
    command = cli_command("train", "-u", str(settings), "--hparam", f"nbEpoch={EPOCHS}")
    if wait:
        return subprocess.run(command, cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=300)
    return subprocess.Popen(command, cwd=workdir, env={**cli_env(), **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def experiments(workdir):
    return sorted(path.parent for path in (workdir / "experiments").glob("**/run.json"))


@pytest.mark.slow
@pytest.mark.claim(
    '`deterministic = True`: a run killed mid-epoch or mid-export and resumed ends bitwise identical to an '
    'uninterrupted one',
    note="(a dropout model; 46 arrays of the last checkpoint compared; fails without the dataset's skip-forward or "
         'without the per-epoch seed generators)')
def test_a_killed_and_resumed_deterministic_run_ends_bitwise_identical(workdir):
    (workdir / "examples/regression/model_curve_fitting.py").write_text(DROPOUT_MODEL)
    settings = settings_variant(workdir, "deterministic.py", [DETERMINISTIC])
    result = train(workdir, settings)
    assert result.returncode == 0, result.stdout + result.stderr
    [uninterrupted] = experiments(workdir)
    reference = final_arrays(uninterrupted)

    held = workdir / "held"
    runs = {}
    for case in ("mid-epoch", "mid-export"):
        before = set(experiments(workdir))
        process = train(workdir, settings, env={"EM_TEST_HOLD_AT": str(held)} if case == "mid-epoch" else {},
                        wait=False)
        output = OutputReader(process)
        root = wait_for(lambda: (set(experiments(workdir)) - before) or process.poll() is not None, 120,
                        "the experiment folder")
        assert process.poll() is None, output.text()
        root = next(iter(root))
        if case == "mid-epoch":
            wait_for(lambda: held.exists() or process.poll() is not None, 180, "step 10 of epoch 3")
            process.kill()
            process.wait(timeout=30)
        else:
            wait_for(lambda: (root / "exported_models" / "1").is_dir() or process.poll() is not None, 180,
                     "version 1")
            kill_when_seen(process, root / "exported_models", ".tmp-", 180)  # version 2 or later, half written
        assert process.returncode == -9, output.text()
        resumed = run_command(["train", "--resume", str(root)], cwd=workdir, env=cli_env(),
                              capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        runs[case] = final_arrays(root)

    for case, arrays in runs.items():
        assert arrays.keys() == reference.keys()
        different = [name for name in reference if not np.array_equal(arrays[name], reference[name])]
        assert not different, (f"{case}: {len(different)} of {len(reference)} arrays differ from the uninterrupted "
                               f"run's: {different[:5]}")
