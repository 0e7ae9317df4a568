"""Settings files behave like the Python scripts they are (`python settings.py`): a helper module beside them is
importable and `__file__` is the user's file, on the first run and on every resume, which runs the experiment's copy
unless told to run the user's (edited) file; misspelt setting names are named with the closest known one."""

import json
import logging
import textwrap

import numpy as np
import pytest

from conftest import REPO, read_run, settings_variant, single_experiment

SETTINGS = '''
"""8x8 digit-like images from a file beside this one, loaded by a helper module beside it."""
import os
import signal

import tensorflow as tf
from digits_data import load  # digits_data.py, beside this file: importable as `python settings.py` makes it

HERE = os.path.dirname(os.path.abspath(__file__))
workingFolder = 'runs'
session_name = 'digits'
model_file = 'model.py'
hparams = {'learningRate': 0.01}
random_seed = 3
nbEpoch = 3
batch_size = 32


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    images, labels = load(os.path.join(HERE, 'data', 'digits.npz'), isTraining)
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate)


def get_total_loss(model):
    return tf.keras.losses.SparseCategoricalCrossentropy()


def get_metrics(model, loss):
    return ['accuracy']


class CtrlCAfterEpoch(tf.keras.callbacks.Callback):
    """Presses Ctrl-C after the epoch named in the file `ctrl_c_after_epoch` beside the settings, if any."""

    def on_epoch_end(self, epoch, logs=None):
        marker = os.path.join(HERE, 'ctrl_c_after_epoch')
        if os.path.exists(marker) and open(marker).read().strip() == str(epoch + 1):
            os.remove(marker)
            os.kill(os.getpid(), signal.SIGINT)


def addon_callbacks(model, train_samples, val_samples):
    return [CtrlCAfterEpoch()]
'''

DATA_HELPER = '''
import numpy as np


def load(path, training):
    with np.load(path) as data:
        images, labels = data['images'], data['labels']
    return (images[:320], labels[:320]) if training else (images[320:], labels[320:])
'''

MODEL = '''
import json
import os

import tensorflow as tf
from blocks import classifier_head  # blocks.py, beside this file

with open(os.path.join(os.path.dirname(__file__), 'architecture.json')) as file:  # beside this file
    ARCHITECTURE = json.load(file)


def model(usersettings):
    images = tf.keras.Input((8, 8, 1), name='image')
    hidden = tf.keras.layers.Flatten()(images)
    return tf.keras.Model(images, classifier_head(hidden, ARCHITECTURE['units'], 10), name='digits')
'''

BLOCKS = '''
import tensorflow as tf


def classifier_head(hidden, units, classes):
    hidden = tf.keras.layers.Dense(units, activation='relu')(hidden)
    return tf.keras.layers.Dense(classes, activation='softmax', name='class_scores')(hidden)
'''


def write_project(folder, seed=0):
    """A researcher's project: settings, model, two helper modules, a data file and a JSON file beside them."""
    rng = np.random.default_rng(seed)
    print(f"digits data seed: {seed}")
    labels = rng.integers(0, 10, size=400)
    patterns = rng.normal(size=(10, 8, 8, 1)).astype(np.float32)
    images = patterns[labels] + rng.normal(scale=0.5, size=(400, 8, 8, 1)).astype(np.float32)
    (folder / "data").mkdir(parents=True)
    np.savez(folder / "data" / "digits.npz", images=images, labels=labels.astype(np.int32))
    for name, text in (("settings.py", SETTINGS), ("digits_data.py", DATA_HELPER), ("model.py", MODEL),
                       ("blocks.py", BLOCKS)):
        (folder / name).write_text(textwrap.dedent(text).lstrip())
    (folder / "architecture.json").write_text(json.dumps({"units": 16}))
    return folder / "settings.py"


@pytest.mark.slow
@pytest.mark.claim(
    "settings and model files run as scripts: a helper module beside them imports, `__file__` is the user's file, "
    'also on resume',
    note="(run from another folder; Ctrl-C after epochs 1 and 2, read by the copy from beside the user's file)")
@pytest.mark.claim(
    'a resume runs the copies; an edited original is named in one line; `--settings-source original` runs it, '
    'replacing the copies, recorded as an accepted code change')
def test_a_settings_file_using_file_and_sibling_modules_trains_is_interrupted_and_resumes_as_its_script(
        workdir, run_cli):
    """Run from another folder: sibling imports and `__file__` work on the first run and on each resume (the copy
    runs as the user's file); an edited settings file is named on resume and runs only when asked for."""
    project = workdir / "proj"
    settings = write_project(project)
    (project / "ctrl_c_after_epoch").write_text("1")
    first = run_cli("train", "-u", str(settings.relative_to(workdir)))
    assert first.returncode == 130, first.stderr  # Ctrl-C after epoch 1: interrupted, resumable
    root = single_experiment(workdir / "runs")
    info = read_run(root)
    assert info["status"] == "interrupted", info
    assert info["settings_file"] == str(settings.resolve()) and info["model_file"] == str(project / "model.py")

    with settings.open("a") as file:  # the researcher edits the settings file while the run waits
        file.write("\nprint('the edited settings file runs')\n")
    (project / "ctrl_c_after_epoch").write_text("2")
    second = run_cli("train", "--resume", str(root))
    assert second.returncode == 130, second.stderr  # the copy's callback read the marker beside the user's file
    differs = [line for line in second.stderr.splitlines() if "differs from the run's copy" in line]
    assert len(differs) == 1 and differs[0].startswith(f"{settings.resolve()} differs from the run's copy "
                                                       "experiment_settings.py: the copy runs"), second.stderr
    assert "--settings-source original" in differs[0]
    assert "the edited settings file runs" not in second.stdout

    edited = settings.read_text()
    settings.write_text(edited + "def broken(:\n")  # an edited file that does not load: the copies stay as they are
    refused = run_cli("train", "--resume", str(root), "--settings-source", "original")
    assert refused.returncode == 2 and "settings.py: line" in refused.stderr and "syntax error" in refused.stderr
    assert (root / "experiment_settings.py").read_text() != edited and read_run(root)["status"] == "interrupted"
    settings.write_text(edited)
    third = run_cli("train", "--resume", str(root), "--settings-source", "original")
    assert third.returncode == 0, third.stderr
    assert "the edited settings file runs" in third.stdout
    info = read_run(root)
    assert info["status"] == "finished" and info["epochs_completed"] == 3, info
    assert (root / "experiment_settings.py").read_text() == settings.read_text()  # the copy is what ran
    assert info["attempts"][-1]["accepted_code_change"] == [
        f"experiment_settings.py (replaced by {settings.resolve()})"], info["attempts"][-1]
    history = np.genfromtxt(root / "history.csv", delimiter=",", names=True)
    assert list(history["epoch"].astype(int)) == [1, 2, 3]


@pytest.mark.claim(
    "a misspelt setting name is one warning line with the closest setting; the original framework's and the "
    "examples' names stay quiet")
def test_misspelt_setting_names_are_named_with_the_closest_one(workdir, caplog):
    """The issue's two typos (the settings they meant left out) and a misspelt class are named; the module's own
    names that merely resemble a setting it also sets, or a setting of another kind, are not."""
    from experiments_manager.settings import load_settings

    path = settings_variant(workdir, "typos.py", [
        "del monitored_loss_name, early_stopping_patience, Client_IO",
        "monitored_loss = 'val_mean_absolute_error'", "early_stoping_patience = 1",
        "class Client_Io:", "    pass",
        "raw_data_dir = 'data'", "hparam = hparams", "optimizer = 'adam'", "my_own_helper_value = 7"])
    with caplog.at_level(logging.WARNING, logger="experiments_manager"):
        settings = load_settings(path)
    assert [record.getMessage() for record in caplog.records] == [
        "typos.py: monitored_loss: not a setting (ignored); did you mean monitored_loss_name?",
        "typos.py: early_stoping_patience: not a setting (ignored); did you mean early_stopping_patience?",
        "typos.py: Client_Io: not a setting (ignored); did you mean Client_IO?",
    ]
    assert settings.training.early_stopping_patience == 10  # what it trains with, as the warning says
    assert settings.training.monitor == "val_loss"


@pytest.mark.parametrize("path", [
    "examples/regression/mysettings_curve_fitting.py", "examples/classification/mysettings_image_classification.py",
    "examples/timeseries/mysettings_timeseries_forecasting.py", "examples/kafka/mysettings_kafka_curve_fitting.py",
    "examples/federated/mysettings_federated_curve_fitting.py", "tests/data/original_style/mysettings_original.py"])
@pytest.mark.claim(
    "a misspelt setting name is one warning line with the closest setting; the original framework's and the "
    "examples' names stay quiet")
def test_the_examples_names_raise_no_misspelling_warning(workdir, path, caplog):
    """The names of the original framework (`served_input_names`, ...) and the examples' own helpers stay quiet."""
    from experiments_manager.settings import load_settings

    with caplog.at_level(logging.WARNING, logger="experiments_manager"):
        load_settings(REPO / path if path.startswith("tests/") else path)
    assert [record.getMessage() for record in caplog.records] == []
