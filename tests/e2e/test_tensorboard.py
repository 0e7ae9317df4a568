"""What a researcher sees in TensorBoard, asked of a real `tensorboard` process (and headless Chromium).

One lab folder holds two different examples, a 2-trial sweep and a run that failed (loss NaN), trained
through the CLI. TensorBoard is started on that parent folder, as on any folder a user may pick, and
queried through the HTTP endpoints its frontend uses.
"""

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from experiments_manager.run.experiment import Experiment
from experiments_manager.run.discovery import find_experiments

from conftest import REPO, cli_env, free_port, read_run, run_command, settings_variant, wait_for

pytestmark = pytest.mark.slow  # its module fixtures train several runs (make test-fast leaves it out)

HPARAMS_STATUS = {"finished": "STATUS_SUCCESS", "failed": "STATUS_FAILURE", "interrupted": "STATUS_UNKNOWN"}
ARTIFACTS = REPO / "test-artifacts"  # screenshots of a failed browser test


def _train(lab, *arguments):
    result = run_command(arguments, cwd=lab, env=cli_env(), capture_output=True, text=True, timeout=400)
    return result


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Trains the runs (through the CLI) into one folder; returns (folder, experiment folders)."""
    lab = tmp_path_factory.mktemp("lab")
    shutil.copytree(REPO / "examples", lab / "examples")
    profiled = settings_variant(lab, "profiled.py", ["use_profiling = True", "histogram_freq = 2"])
    diverging = settings_variant(lab, "diverging.py", [
        "session_name = 'diverging'",
        "def get_total_loss(model):",
        "    return lambda y_true, y_pred: tf.reduce_mean(y_pred) * float('nan')",
    ])
    runs = [
        ("train", "-u", str(profiled), "--hparam", "nbEpoch=3"),
        ("train", "-u", "examples/classification/mysettings_image_classification.py", "--hparam", "nbEpoch=2"),
        ("train", "-u", str(diverging), "--hparam", "nbEpoch=2"),
        ("sweep", "-u", "examples/regression/mysettings_curve_fitting.py", "--max-evals", "2", "--seed", "3",
         "--hparam", "nbEpoch=2"),
    ]
    for arguments in runs:
        result = _train(lab, *arguments)
        failed_on_purpose = str(diverging) in arguments
        assert (result.returncode != 0) == failed_on_purpose, result.stdout + result.stderr
    experiments = sorted(experiment.root for working_folder in (lab / "experiments/examples").iterdir()
                         for experiment in find_experiments(working_folder))  # a sweep's trials are in its folder
    assert len(experiments) == 5, experiments
    return lab, experiments


class TensorBoard:
    """A real `tensorboard` process on 127.0.0.1 and a free port."""

    def __init__(self, logdir, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        executable = Path(sys.executable).with_name("tensorboard")
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(executable), "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(self.port),
                 "--reload_interval", "1"],
                stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                start_new_session=True)
        self.log_path = log_path

    def get_bytes(self, path, data=None):
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
            return gzip.decompress(body) if response.headers.get("Content-Encoding") == "gzip" else body

    def get(self, path):
        return json.loads(self.get_bytes(path))

    def get_text(self, path):
        return self.get_bytes(path).decode()

    def post(self, path, body):
        return json.loads(self.get_bytes(path, json.dumps(body).encode()))

    def answers(self):
        assert self.process.poll() is None, f"tensorboard exited: {Path(self.log_path).read_text()[-2000:]}"
        try:
            return self.get("/data/runs") is not None
        except OSError:
            return False

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


def _session_groups(board):
    return board.post("/data/plugin/hparams/session_groups", {
        "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                                  "STATUS_RUNNING"],
        "colParams": [], "startIndex": 0, "sliceSize": 100})["sessionGroups"]


@pytest.fixture(scope="module")
def board(lab, tmp_path_factory):
    """TensorBoard on the lab's `experiments` folder (a parent of three working folders), fully loaded."""
    folder, experiments = lab
    board = TensorBoard(folder / "experiments", tmp_path_factory.mktemp("tensorboard") / "tensorboard.log")
    try:
        wait_for(board.answers, 60, "tensorboard to answer")
        expected = {_run_name(folder, experiment) for experiment in experiments}
        wait_for(lambda: expected <= set(board.get("/data/runs")), 60, f"tensorboard to list {expected}", 0.5)
        wait_for(lambda: len(_session_groups(board)) == len(experiments), 60, "every HParams session", 0.5)
        yield board
    finally:
        board.stop()


def _run_name(folder, experiment):
    return (experiment / "logs").relative_to(folder / "experiments").as_posix()


@pytest.mark.claim('`--logdir` of a folder holding several working folders works', note='(board on `experiments/`)')
@pytest.mark.claim('HParams: every hparam of every run (no run imposes its columns)')
@pytest.mark.claim('HParams: best value and last-epoch values per run')
@pytest.mark.claim('HParams: status from run.json (Success, Failure; Unknown while running or interrupted)')
@pytest.mark.claim('HParams: trial ID `10:00:05 lr=0.1 (11-22 my_test)`, one row per run')
@pytest.mark.claim('HParams: integer hparams show as written')
@pytest.mark.claim('TensorBoard on a sweep folder compares its trials; on a parent, with every other run')
def test_hparams_shows_every_hparam_status_and_best_value_of_every_run(lab, board):
    folder, experiments = lab
    experiment = board.post("/data/plugin/hparams/experiment", {"experimentName": "", "hparamsLimit": 1000})
    names = {info["name"] for info in experiment["hparamInfos"]}
    infos = {experiment_dir: read_run(experiment_dir) for experiment_dir in experiments}
    every_hparam = set().union(*(info["hparams"] for info in infos.values()))
    assert every_hparam <= names, f"missing columns: {every_hparam - names}"
    metrics = {(metric["name"]["group"], metric["name"]["tag"]) for metric in experiment["metricInfos"]}
    assert {("", "best_val_loss"), ("train", "epoch_loss"), ("validation", "epoch_loss"),
            ("train", "epoch_learning_rate")} <= metrics

    groups = {group["name"]: group for group in _session_groups(board)}
    for experiment_dir, info in infos.items():
        label = Experiment(experiment_dir).label()
        assert label in groups, f"{label!r} not among the trial ids {sorted(groups)}"
        group = groups[label]
        session = group["sessions"][0]
        assert session["name"] == _run_name(folder, experiment_dir)
        assert session["status"] == HPARAMS_STATUS[info["status"]], (label, info["status"])
        best = {value["name"]["tag"]: value for value in group["metricValues"] if value["name"]["group"] == ""}
        if info["best_value"] is None:  # the diverging run never had a finite val_loss
            assert info["status"] == "failed"
            continue
        tag = f"best_{info['monitored_loss_name']}"
        assert best[tag]["value"] == pytest.approx(info["best_value"], rel=1e-6)
        assert best[tag]["trainingStep"] == info["epochs_completed"]  # steps are epochs from 1
        for key, value in info["hparams"].items():  # ints as written ("32", not "32.000")
            if isinstance(value, int) and not isinstance(value, bool):
                assert group["hparams"][key] == str(value)
    assert sorted(info["status"] for info in infos.values()) == ["failed"] + ["finished"] * 4
    assert len(groups) == len(experiments)  # one row per run: trial ids are unique


@pytest.mark.claim('Projector: model outputs of validation samples (EMA), index / label / prediction metadata')
def test_projector_lists_each_experiment_with_outputs_and_metadata(lab, board):
    folder, experiments = lab
    runs = board.get("/data/plugin/projector/runs")
    for experiment_dir in experiments:
        if read_run(experiment_dir)["status"] != "finished":
            continue
        run = _run_name(folder, experiment_dir) + "/validation"
        assert run in runs, (run, runs)
        quoted = urllib.parse.quote(run)
        info = board.get(f"/data/plugin/projector/info?run={quoted}")
        (embedding,) = info["embeddings"]
        rows, columns = embedding["tensorShape"]
        assert columns >= 3 and rows > 10  # the frontend drops a second dimension of 1, its PCA needs 3
        name = urllib.parse.quote(embedding["tensorName"])
        tensor = board.get_bytes(f"/data/plugin/projector/tensor?run={quoted}&name={name}")
        assert len(tensor) == rows * columns * 4  # float32
        metadata = board.get_text(f"/data/plugin/projector/metadata?run={quoted}&name={name}").splitlines()
        header = metadata[0].split("\t")
        assert header[:2] == ["index", "label"] and len(metadata) == rows + 1
        if read_run(experiment_dir)["model_name"] == "model_small_convnet":  # one-hot labels: classes
            assert header == ["index", "label", "prediction"] and columns == 3  # three classes
            assert {line.split("\t")[1] for line in metadata[1:]} == {"0", "1", "2"}
        else:  # regression: (x, predicted y, true y), the fitted curve beside the data
            assert embedding["tensorName"] == "inputs_outputs_labels" and columns == 3


@pytest.mark.claim('runs are named by their folder (`<experiment>/logs/train`)')
@pytest.mark.claim('Scalars: `epoch_learning_rate` (fixed rate)')
@pytest.mark.claim(
    'Histograms every `histogram_freq` epochs and at the last',
    note='(freq 2 of 3 epochs: steps [1, 3])')
@pytest.mark.claim("Graphs: the model's inference graph")
@pytest.mark.claim('Profile with `use_profiling = True`')
def test_scalars_histograms_learning_rate_graph_and_profile_are_shown(lab, board):
    folder, experiments = lab
    scalars = board.get("/data/plugin/scalars/tags")
    histograms = board.get("/data/plugin/histograms/tags")
    for experiment_dir in experiments:
        run = _run_name(folder, experiment_dir)
        assert {"epoch_loss", "epoch_learning_rate"} <= set(scalars[f"{run}/train"]), scalars[f"{run}/train"]
        assert "epoch_loss" in scalars[f"{run}/validation"]
        assert any(tag.endswith("/kernel") for tag in histograms[f"{run}/train"]), histograms.get(f"{run}/train")
    profiled = next(path for path in experiments if "profiled.py" in read_run(path)["settings_file"])
    run = _run_name(folder, profiled)
    # histogram_freq = 2 in a 3-epoch run: epochs 1 and 3 (the last)
    kernel = next(tag for tag in histograms[f"{run}/train"] if tag.endswith("/kernel"))
    steps = board.get(f"/data/plugin/histograms/histograms?run={urllib.parse.quote(run + '/train')}"
                      f"&tag={urllib.parse.quote(kernel)}")
    assert [step for _, step, _ in steps] == [1, 3]
    learning_rate = board.get(f"/data/plugin/scalars/scalars?run={urllib.parse.quote(run + '/train')}"
                              f"&tag=epoch_learning_rate")
    assert [step for _, step, _ in learning_rate] == [1, 2, 3]
    graphs = board.get("/data/plugin/graphs/info")
    assert graphs[f"{run}/train"]["run_graph"], graphs.get(f"{run}/train")  # the Graphs tab
    assert board.get("/data/plugins_listing")["profile"]["enabled"]
    assert [name for name in board.get("/data/plugin/profile/runs") if name.startswith(run + "/")]  # one per trace


@pytest.mark.claim('epochs counted from 1 in run.json, history.csv and TensorBoard')
def test_one_numbering_of_epochs_in_run_json_history_and_tensorboard(lab, board):
    folder, experiments = lab
    experiment_dir = next(path for path in experiments if "profiled.py" in read_run(path)["settings_file"])
    info = read_run(experiment_dir)
    rows = (experiment_dir / "history.csv").read_text().splitlines()
    header = rows[0].split(",")
    epochs = [int(row.split(",")[0]) for row in rows[1:]]
    assert epochs == [1, 2, 3] == list(range(1, info["epochs_completed"] + 1))
    val_loss = {int(row.split(",")[0]): float(row.split(",")[header.index("val_loss")]) for row in rows[1:]}
    assert val_loss[info["best_epoch"]] == pytest.approx(info["best_value"])
    run = urllib.parse.quote(_run_name(folder, experiment_dir) + "/validation")
    points = board.get(f"/data/plugin/scalars/scalars?run={run}&tag=epoch_loss")
    assert {step: pytest.approx(value, rel=1e-6) for _, step, value in points} == val_loss


@pytest.mark.parametrize("kind", ["sweep folder", "one experiment"])
@pytest.mark.claim('`--logdir` of a sweep folder or one experiment works')
@pytest.mark.claim(
    '`--logdir` of one `workingFolder` works',
    note='(weak: a working folder alone is not tried; its parent and a sweep folder are)')
@pytest.mark.claim('TensorBoard on a sweep folder compares its trials; on a parent, with every other run')
def test_a_sweep_folder_or_one_experiment_as_logdir_shows_its_runs(lab, tmp_path, kind):
    folder, experiments = lab
    trials = [path for path in experiments if (path.parent / "sweep.json").is_file()]
    assert len(trials) == 2
    logdir = trials[0].parent if kind == "sweep folder" else trials[0]
    expected = trials if kind == "sweep folder" else trials[:1]
    board = TensorBoard(logdir, tmp_path / "tensorboard.log")
    try:
        wait_for(board.answers, 60, "tensorboard to answer")
        wait_for(lambda: len(_session_groups(board)) == len(expected), 60, "the HParams sessions", 0.5)
        labels = {group["name"] for group in _session_groups(board)}
        assert labels == {Experiment(path).label() for path in expected}
        runs = wait_for(lambda: board.get("/data/plugin/projector/runs"), 60, "projector runs", 0.5)
        assert sorted(runs) == sorted((path / "logs/validation").relative_to(logdir).as_posix() for path in expected)
    finally:
        board.stop()


def _text_in_frames(page, text):
    """True when `text` is visible in the page or any of its frames (the projector renders in an iframe)."""
    for frame in page.frames:
        try:
            if frame.get_by_text(text, exact=False).first.is_visible():
                return True
        except Exception:  # a frame navigating away
            continue
    return False


@pytest.mark.parametrize("tab, expected, absent", [
    ("scalars", "epoch_loss", "No scalar data was found"),
    ("hparams", "best_val_loss", "No hparams data was found"),
    ("projector", "Points: 500", "No checkpoint was found"),
])
@pytest.mark.claim(
    'Projector: 500 samples',
    note='(projector case, "Points: 500"; skipped without Chromium unless CI requires it)')
@pytest.mark.claim('the tabs render in a browser')
def test_the_tabs_render_data_in_a_browser(lab, board, browser, tab, expected, absent):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(f"{board.url}/#{tab}")
        wait_for(lambda: _text_in_frames(page, expected), 60, f"'{expected}' in the {tab} tab", 0.5)
        assert not _text_in_frames(page, absent)
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"tensorboard_{tab}.png"))
        raise
    finally:
        page.close()
