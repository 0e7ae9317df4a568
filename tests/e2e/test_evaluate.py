"""The best model in hand and a test set: `outcome.model` and `em.load` are the reported best version and answer as
the server does; each version's record (epoch, monitored value) in run.json, beside the version and in the served
metadata; `evaluate` on the settings' test pipeline (or a given folder), its confusion matrix checked against numpy.

One small classifier (three clouds of 2-D points, a dense network) is trained once for the module, exporting every
epoch and keeping only the newest version (and the best), with a learning rate that jumps at the last epoch: its
last version is not its best.
"""

import contextlib
import json
import shutil
import socket
import types

import numpy as np
import pytest
import requests

from conftest import dead_pid, read_run

from experiments_manager.run.evaluations import newest_evaluation
from experiments_manager.run.experiment import Experiment

SETTINGS = '''"""Three clouds of points around three centres: a tiny classifier with a test set."""
import numpy as np
import tensorflow as tf

workingFolder = 'experiments'
session_name = 'blobs'
hparams = {'nbEpoch': 3}
model_file = 'model_blobs.py'
random_seed = 7
nbEpoch = hparams['nbEpoch']
batch_size = 32
raw_data_dir_train = 'train'
raw_data_dir_val = 'val'
raw_data_dir_test = 'test'
class_names = ['left', 'right', 'top']
save_only_last_best_model = False   # every epoch exported: the best version is not the last one
export_versions_to_keep = 1         # the newest, and the one holding the best epoch
histogram_freq = 0
CENTRES = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.2]], np.float32)
STEPS = 10  # 300 // 32 + 1 batches an epoch

def get_learningRate():  # the last epoch trains at a rate that ruins the weights
    return tf.keras.optimizers.schedules.PiecewiseConstantDecay([2 * STEPS], [0.05, 5.0])

def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)

def get_total_loss(model):
    return 'sparse_categorical_crossentropy'

def get_metrics(model, loss):
    return ['sparse_categorical_accuracy']

def points(folder):
    seed, count = {'train': (0, 300), 'val': (1, 90), 'test': (2, 150), 'holdout': (3, 60)}[folder]
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=count)
    return (CENTRES[labels] + rng.normal(scale=0.6, size=(count, 2))).astype(np.float32), labels

def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    x, labels = points(raw_data_files_folder)
    dataset = tf.data.Dataset.from_tensor_slices((x, labels.astype(np.int64)))
    if isTraining:
        dataset = dataset.shuffle(len(x), seed=random_seed)
    return dataset.batch(batch_size)
'''

MODEL = '''import tensorflow as tf

def model(usersettings):
    inputs = tf.keras.Input(shape=(2,), name='point')
    hidden = tf.keras.layers.Dense(16, activation='relu')(inputs)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(3, activation='softmax', name='scores')(hidden), name='blobs')
'''
MODEL_NAME = "model_blobs"


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    """The classifier trained once (3 epochs, every epoch exported, the newest and the best kept); its folder,
    outcome and test points."""
    import experiments_manager as em

    folder = tmp_path_factory.mktemp("blobs")
    (folder / "settings_blobs.py").write_text(SETTINGS)
    (folder / "model_blobs.py").write_text(MODEL)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        outcome = em.train("settings_blobs.py")
        assert outcome.status == "finished", outcome.reason
        namespace = {}
        exec(compile(SETTINGS, "settings_blobs.py", "exec"), namespace)  # the test points, as the pipeline makes them
    root = (folder / outcome.experiment.root).resolve()
    return types.SimpleNamespace(folder=folder, root=root, outcome=outcome, points=namespace["points"])


def history(root):
    return np.genfromtxt(root / "history.csv", delimiter=",", names=True)


def served_answer(version_folder, x):
    """What the server computes for a version: its SavedModel's serving_default, called in-process."""
    import tensorflow as tf

    return tf.saved_model.load(str(version_folder)).signatures["serving_default"](point=tf.constant(x))["output_0"]


@pytest.mark.claim(
    'each version records the epoch and monitored value it holds (run.json `version_records`, '
    '`assets.extra/version_record.json`, the served REST metadata)',
    note="(against history.csv's rows, every epoch exported)")
@pytest.mark.claim(
    'the best version is the one holding the best epoch, not the newest; the retention keeps it',
    note='(the last epoch ruined by a learning-rate jump; `export_versions_to_keep = 1` keeps [best, 3])')
@pytest.mark.claim(
    '`outcome.model` and `em.load(RUN)` are the best version (EMA weights) and answer what the server answers; '
    '`em.load(RUN, version=N)`; the repr says which',
    note="(the version's `serving_default` in-process and a real REST round trip, rtol 1e-6; the last epoch's "
         'model differs)')
@pytest.mark.claim('`outcome.model`, `em.load(folder, version=)`, `em.evaluate(folder)`')
def test_outcome_model_and_em_load_are_the_best_version_and_answer_as_the_server(blobs, model_server):
    import experiments_manager as em
    from experiments_manager.serving.config import ModelSource

    info = read_run(blobs.root)
    rows = history(blobs.root)
    best_epoch = int(np.argmin(rows["val_loss"])) + 1
    assert info["best_epoch"] == best_epoch < 3, "the last epoch's jump of the learning rate made it the worst"
    # each version's record: the epoch it holds and the monitored value then, as history.csv has them (kept for
    # the versions the retention removed too)
    records = info["version_records"]
    assert sorted(records) == ["1", "2", "3"]
    for version, record in records.items():
        assert record["monitor"] == "val_loss" and record["epoch"] == int(version)  # one version an epoch
        assert record["value"] == pytest.approx(rows["val_loss"][record["epoch"] - 1], rel=1e-6)
    best = int(next(version for version, record in records.items() if record["epoch"] == best_epoch))
    assert info["exported_versions"] == [best, 3]  # export_versions_to_keep = 1 kept the best beside the newest
    for version in info["exported_versions"]:
        on_disk = blobs.root / "exported_models" / str(version) / "assets.extra/version_record.json"
        assert json.loads(on_disk.read_text()) == records[str(version)]

    # outcome.model is that version (not the last epoch's weights), and its repr says which
    model = blobs.outcome.model
    assert model.version_info["version"] == best and model.version_info["epoch"] == best_epoch
    assert model.name == f"blobs_v{best}"
    value = records[str(best)]["value"]
    assert f"model: version {best} (epoch {best_epoch}, best val_loss {value:.4g})" in repr(blobs.outcome)
    x, _ = blobs.points("test")
    expected = served_answer(blobs.root / "exported_models" / str(best), x).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-7)
    last_epoch = blobs.outcome.trained_model.predict(x, verbose=0)
    assert np.max(np.abs(last_epoch - expected)) > 1e-2  # what outcome.model was before: another model

    # em.load from the folder alone (the run's own copies): the best version, and version N on request
    loaded = em.load(blobs.root)
    assert loaded.version_info["version"] == best
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-7)
    third = em.load(blobs.root, version=3)
    np.testing.assert_allclose(third.predict(x, verbose=0),
                               served_answer(blobs.root / "exported_models/3", x).numpy(), rtol=1e-6, atol=1e-7)

    # a real server round trip: the same answers, and the version's record in its metadata
    server = model_server([ModelSource(MODEL_NAME, blobs.root / "exported_models", policy="specific",
                                       versions=(best,))])
    url = f"{server.rest_url}/v1/models/{MODEL_NAME}/versions/{best}"
    answer = requests.post(f"{url}:predict", json={"instances": x.tolist()}, timeout=10).json()["predictions"]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), answer, rtol=1e-6, atol=1e-7)
    metadata = requests.get(f"{url}/metadata", timeout=10).json()["metadata"]
    assert metadata["version_record"] == records[str(best)]


@pytest.mark.claim(
    '`evaluate RUN` on the test pipeline: compiled metrics, per-class table, confusion matrix (csv, json, PNG) in '
    'its own folder under `evaluations/`, printed; `--version N --data FOLDER`; a run being trained is evaluated as '
    'it is (no lease taken, run.json untouched)',
    note="(the matrix against numpy's argmax of `em.load`'s predictions; precision / recall / support from it; the "
         'accuracy metric = its trace)')
@pytest.mark.claim('`outcome.model`, `em.load(folder, version=)`, `em.evaluate(folder)`')
def test_evaluate_prints_and_saves_the_confusion_matrix_numpy_computes(blobs, run_cli):
    import experiments_manager as em

    # what an evaluation killed mid-write leaves; a live one's on another node is left alone
    killed = blobs.root / "evaluations" / f".tmp-evaluation-{socket.gethostname()}-{dead_pid()}"
    elsewhere = blobs.root / "evaluations" / f".tmp-evaluation-othernode-{dead_pid()}"
    elsewhere.mkdir(parents=True)
    (killed / "evaluation.json").parent.mkdir(parents=True, exist_ok=True)
    (killed / "evaluation.json").write_text("{")
    result = run_cli("evaluate", str(blobs.root))
    assert result.returncode == 0, result.stdout + result.stderr
    assert not killed.exists() and elsewhere.is_dir()  # removed by the next evaluation on its node
    elsewhere.rmdir()
    loaded = em.load(blobs.root)
    best = loaded.version_info["version"]
    entry = newest_evaluation(blobs.root, {})
    assert entry["version"] == best and entry["data"] == "test pipeline"
    assert set(entry["metrics"]) == {"loss", "sparse_categorical_accuracy"}

    # numpy's confusion matrix of the loaded best version's argmax against the test labels
    x, labels = blobs.points("test")
    predicted = loaded.predict(x, verbose=0).argmax(axis=1)
    expected = np.zeros((3, 3), np.int64)
    np.add.at(expected, (labels, predicted), 1)
    report = blobs.root / entry["report"]
    saved = np.loadtxt(report / "confusion_matrix.csv", delimiter=",", skiprows=1, usecols=(1, 2, 3), dtype=np.int64)
    np.testing.assert_array_equal(saved, expected)
    assert json.loads((report / "evaluation.json").read_text())["classification"]["confusion_matrix"] == expected.tolist()
    assert entry["metrics"]["sparse_categorical_accuracy"] == pytest.approx(np.trace(expected) / len(labels), abs=1e-6)
    per_class = np.genfromtxt(report / "per_class.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    assert list(per_class["class"]) == ["left", "right", "top"]
    np.testing.assert_allclose(per_class["recall"], np.diag(expected) / expected.sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(per_class["precision"], np.diag(expected) / expected.sum(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(per_class["support"], expected.sum(axis=1))
    assert (report / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the printed table: the metrics, the per-class rows, the matrix's rows, where the report went
    out = result.stdout
    assert "data:     test pipeline" in out and f"samples:  {len(labels)}" in out
    assert f"sparse_categorical_accuracy  {entry['metrics']['sparse_categorical_accuracy']:.6g}" in out
    for name, row in zip(("left", "right", "top"), expected):
        assert " ".join([name, *map(str, row)]) in " ".join(out.split()), name
    assert str(report) in out

    # version N on another folder, while a training run holds the run's lease: evaluated as it is, its own folder
    # the newest; run.json (the training run's) untouched
    before = (blobs.root / "run.json").read_bytes()
    with Experiment(blobs.root).held(["experiments-manager", "train", "--resume", str(blobs.root)]):
        again = em.evaluate(blobs.root, version=3, data="holdout")
    assert again.samples == 60 and again.version == 3 and again.confusion.sum() == 60
    newest = newest_evaluation(blobs.root, {})
    assert (newest["version"], newest["data"]) == (3, "holdout") and blobs.root / newest["report"] == again.folder
    assert (again.folder / "confusion_matrix.png").is_file() and (blobs.root / "run.json").read_bytes() == before


@pytest.mark.claim('an unknown version, no test set, no export, not a run: one line (exit 2), nothing written')
def test_load_and_evaluate_refuse_in_one_line_and_leave_nothing(blobs, run_cli, tmp_path):
    import experiments_manager as em
    from experiments_manager.utils.errors import UserInputError

    present = ", ".join(map(str, read_run(blobs.root)["exported_versions"]))
    result = run_cli("evaluate", str(blobs.root), "--version", "9")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {blobs.root}: version: expected one of the exported versions {present}, got 9"
    with pytest.raises(UserInputError, match="not an experiment folder"):
        em.load(tmp_path)

    # a copy of the run without a test set in its settings, then without its exports
    copy = tmp_path / "copy"
    shutil.copytree(blobs.root, copy, ignore=shutil.ignore_patterns("evaluations", "lease.json*"))
    recorded = read_run(copy)
    settings = copy / "experiment_settings.py"
    settings.write_text(settings.read_text().replace("raw_data_dir_test = 'test'", ""))
    with pytest.raises(UserInputError, match=r"experiment_settings.py: raw_data_dir_test: not set, so there is no "
                                             r"test set: .* --data FOLDER"):
        em.evaluate(copy, accept_code_change=True)  # the run's copy of its settings edited: a change, accepted
    shutil.rmtree(copy / "exported_models")
    with pytest.raises(UserInputError, match=r"no exported version yet \(the run is finished, 3 epochs done\)"):
        em.load(copy)
    assert not (copy / "evaluations").exists() and read_run(copy) == recorded


@pytest.mark.claim("`evaluate` of a run on a read-only or full disk prints its numbers, then one line saying they are "
                   "not saved (exit 75); `--output DIR` saves them there")
def test_a_run_on_a_read_only_disk_is_evaluated_its_numbers_printed_and_saved_where_asked(blobs, run_cli, tmp_path):
    from real_filesystems import remount_read_only, tmpfs

    with tmpfs(tmp_path / "handed-over", "20m") as disk:
        copy = disk / "run"
        shutil.copytree(blobs.root, copy, ignore=shutil.ignore_patterns("evaluations", "lease.json*"))
        with open(disk / "filler", "wb", buffering=0) as filler:  # the disk full
            with contextlib.suppress(OSError):
                while True:
                    filler.write(bytes(1 << 16))
        full = run_cli("evaluate", str(copy))
        remount_read_only(disk)
        refused = run_cli("evaluate", str(copy))
        saved = run_cli("evaluate", str(copy), "--output", str(tmp_path / "mine"))
    assert full.returncode == 75 and "sparse_categorical_accuracy" in full.stdout, full.stdout + full.stderr
    assert [line for line in full.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {copy / 'evaluations'}: No space left on device: the evaluation above is not saved; give --output "
        "DIR (em.evaluate(..., output=DIR)) to save it elsewhere"], full.stderr
    assert refused.returncode == 75, refused.stdout + refused.stderr
    assert "sparse_categorical_accuracy" in refused.stdout and "report:" not in refused.stdout
    assert [line for line in refused.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {copy / 'evaluations'}: Read-only file system: the evaluation above is not saved; give --output DIR "
        "(em.evaluate(..., output=DIR)) to save it elsewhere"], refused.stderr
    assert saved.returncode == 0, saved.stdout + saved.stderr
    (report,) = (tmp_path / "mine").iterdir()
    assert f"report:   {report}" in saved.stdout and (report / "confusion_matrix.png").is_file()
    metrics = json.loads((report / "evaluation.json").read_text())["metrics"]
    shown = [line for line in refused.stdout.splitlines() if line.startswith("sparse_categorical_accuracy")]
    assert shown == [f"sparse_categorical_accuracy  {metrics['sparse_categorical_accuracy']:.6g}"]
