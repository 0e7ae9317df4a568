"""Runs logged to a real MLflow tracking server (`mlflow server`, SQLite, 127.0.0.1), checked through its REST API:
one MLflow run per experiment across kill -9 and `train --resume`, each epoch once; a server that does not answer
costs the run nothing and loses nothing (`mlflow sync` sends what the run kept, once)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from conftest import HELD_AT_THE_SECOND_EPOCH, REAL_PARTS_REQUIRED, read_run, settings_variant, wait_for
from test_resume import OutputReader, checkpoints, the_experiment

def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url, path, **query):
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(query)}", timeout=30) as response:
        return json.loads(response.read())


def _post(url, path, body):
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (SQLite backend, artifacts proxied), started once for the module; its URL."""
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    if not os.path.exists(mlflow):
        if REAL_PARTS_REQUIRED:
            pytest.fail("mlflow is not installed (pip install 'experiments_manager[mlflow]')")
        pytest.skip("mlflow is not installed (pip install 'experiments_manager[mlflow]')")
    folder = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = open(folder / "server.log", "w")
    server = subprocess.Popen([mlflow, "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
                               "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"], stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return server.poll() is not None

    wait_for(healthy, 120, "the MLflow server's /health")
    assert server.poll() is None, (folder / "server.log").read_text()
    yield url
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)
    log.close()


def _mlflow_runs(url, folder):
    """The MLflow runs tagged with the experiment folder (every experiment of the server)."""
    experiments = _post(url, "/api/2.0/mlflow/experiments/search", {"max_results": 100})["experiments"]
    found = _post(url, "/api/2.0/mlflow/runs/search", {
        "experiment_ids": [experiment["experiment_id"] for experiment in experiments],
        "filter": f"tags.`experiments_manager.folder` = '{folder.resolve()}'"}).get("runs", [])
    return found


def _history(url, run_id, key):
    return [(point["step"], point["value"]) for point in _get(url, "/api/2.0/mlflow/metrics/get-history",
                                                             run_id=run_id, metric_key=key)["metrics"]]


def _cli(workdir, *arguments):
    return subprocess.run([sys.executable, "-m", "experiments_manager", *arguments], cwd=workdir,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1"), capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.claim("`train --mlflow URI`: one MLflow run per experiment for its whole life, every epoch's metrics at "
                   "step = epoch exactly once, also across kill -9 and `train --resume`")
def test_a_run_killed_and_resumed_is_one_mlflow_run_with_every_epoch_once(mlflow_server, workdir, start_cli):
    settings = settings_variant(workdir, "held.py", [*HELD_AT_THE_SECOND_EPOCH, f"mlflow_tracking_uri = {mlflow_server!r}",
                                                     "mlflow_experiment_name = 'lab regression'"])
    (workdir / "hold").touch()
    process = start_cli("train", "-u", str(settings), "--hparam", "nbEpoch=3")  # the settings name the server
    output = OutputReader(process)
    root = wait_for(lambda: the_experiment(workdir), 120, "the experiment folder")
    wait_for(lambda: checkpoints(root) or process.poll() is not None, 180, "epoch 1's checkpoint")
    assert process.poll() is None, output.text()
    process.kill()  # kill -9 at the second epoch's start: epoch 1 is the run's
    process.wait()
    (workdir / "release").touch()
    resumed = _cli(workdir, "train", "--resume", str(root))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    (mlflow_run,) = _mlflow_runs(mlflow_server, root)  # one run, found by the folder: the resume continued it
    info = read_run(root)
    assert info["mlflow"]["run_id"] == mlflow_run["info"]["run_id"]
    assert (f"MLflow run:        {mlflow_server}/#/experiments/{info['mlflow']['experiment_id']}/runs/"
            f"{info['mlflow']['run_id']}") in resumed.stdout, resumed.stdout
    assert mlflow_run["info"]["status"] == "FINISHED" and mlflow_run["info"]["run_name"] == root.name
    experiment = _get(mlflow_server, "/api/2.0/mlflow/experiments/get", experiment_id=info["mlflow"]["experiment_id"])
    assert experiment["experiment"]["name"] == "lab regression"
    params = {param["key"]: param["value"] for param in mlflow_run["data"]["params"]}
    assert params["nbEpoch"] == "3" and params["settings_file"] == "held.py", params
    history = _history(mlflow_server, info["mlflow"]["run_id"], "val_loss")
    assert [step for step, _ in history] == [1, 2, 3], history  # each epoch once
    csv_rows = (root / "history.csv").read_text().splitlines()[1:]
    assert len(csv_rows) == 3
    tags = {tag["key"]: tag["value"] for tag in mlflow_run["data"]["tags"]}
    assert tags["attempt"] == "2", tags  # the resume's
    artifacts = {item["path"] for item in _get(mlflow_server, "/api/2.0/mlflow/artifacts/list",
                                               run_id=info["mlflow"]["run_id"])["files"]}
    assert {"run.json", "history.csv", "training_curves.png", "experiment_settings.py"} <= artifacts, artifacts


@pytest.mark.slow
@pytest.mark.claim("a tracking server that does not answer costs the run nothing: one warning line, the run "
                   "finishes, what it could not send stays in its folder; `mlflow sync RUN` sends it, twice sends "
                   "nothing twice")
def test_a_server_down_loses_nothing_and_mlflow_sync_sends_it_once(mlflow_server, workdir):
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    started = time.monotonic()
    trained = _cli(workdir, "train", "-u", "examples/regression/mysettings_curve_fitting.py", "--hparam", "nbEpoch=2",
                   "--mlflow", dead)
    print(f"trained with the server down in {time.monotonic() - started:.1f} s")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    said = [line for line in trained.stderr.splitlines() if "does not answer" in line]
    assert len(said) == 1 and dead in said[0], trained.stderr
    root = the_experiment(workdir)
    assert "run_id" not in read_run(root)["mlflow"]
    relative = root.relative_to(workdir)  # as the command line named it
    assert f"MLflow run:        not sent yet: experiments-manager mlflow sync {relative}" in trained.stdout
    assert f"send them with experiments-manager mlflow sync {relative}" in trained.stderr
    kept = [json.loads(line) for line in (root / "mlflow_outbox.jsonl").read_text().splitlines()]
    assert [entry["kind"] for entry in kept] == ["start", "metrics", "metrics", "end"], kept

    synced = _cli(workdir, "mlflow", "sync", str(root.parent), "--mlflow", mlflow_server)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert f"{root}: 4 record(s) sent to {mlflow_server}" in synced.stdout, synced.stdout
    (mlflow_run,) = _mlflow_runs(mlflow_server, root)
    run_id = mlflow_run["info"]["run_id"]
    assert read_run(root)["mlflow"]["run_id"] == run_id and mlflow_run["info"]["status"] == "FINISHED"
    assert [step for step, _ in _history(mlflow_server, run_id, "val_loss")] == [1, 2]

    again = _cli(workdir, "mlflow", "sync", str(root), "--mlflow", mlflow_server)
    assert again.returncode == 0 and f"{root}: nothing to send" in again.stdout, again.stdout + again.stderr
    assert [step for step, _ in _history(mlflow_server, run_id, "val_loss")] == [1, 2]
    assert len(_mlflow_runs(mlflow_server, root)) == 1


@pytest.mark.slow
@pytest.mark.claim("a sweep's trials logged to MLflow are children of one run of the sweep, which holds their best "
                   "value and stands FINISHED once none runs")
def test_a_sweeps_trials_are_children_of_the_sweeps_run(mlflow_server, workdir):
    settings = settings_variant(workdir, "tracked_sweep.py", [f"mlflow_tracking_uri = {mlflow_server!r}",
                                                              "mlflow_experiment_name = 'sweeps'"])
    swept = _cli(workdir, "sweep", "-u", str(settings), "--max-evals", "2", "--seed", "5", "--hparam", "nbEpoch=1")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    (sweep,) = (workdir / "experiments/examples/curve_fitting").glob("*_sweep_*")
    trials = sorted(path.parent for path in sweep.glob("*/run.json"))
    assert len(trials) == 2
    (parent,) = _mlflow_runs(mlflow_server, sweep)
    assert parent["info"]["run_name"] == sweep.name and parent["info"]["status"] == "FINISHED", parent["info"]
    children = [_mlflow_runs(mlflow_server, trial)[0] for trial in trials]
    assert {child["info"]["run_id"] for child in children} == {
        read_run(trial)["mlflow"]["run_id"] for trial in trials}
    for child in children:
        tags = {tag["key"]: tag["value"] for tag in child["data"]["tags"]}
        assert tags["mlflow.parentRunId"] == parent["info"]["run_id"] and child["info"]["status"] == "FINISHED"
    best = min(read_run(trial)["best_value"] for trial in trials)
    assert _history(mlflow_server, parent["info"]["run_id"], "best_val_loss")[-1] == (2, pytest.approx(best))


def test_a_bad_tracking_uri_is_one_line_and_creates_nothing(workdir):
    bad = _cli(workdir, "train", "-u", "examples/regression/mysettings_curve_fitting.py", "--mlflow", "ftp://host/x")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: --mlflow: expected an MLflow tracking URI (http://HOST:PORT, "
                                               "https://..., sqlite:///PATH), got 'ftp://host/x'"], bad.stderr
    assert not (workdir / "experiments").exists()
    settings = settings_variant(workdir, "bad_uri.py", ["mlflow_tracking_uri = 'mlflow-server:5000'"])
    bad = _cli(workdir, "train", "-u", str(settings))
    assert bad.returncode == 2 and [line for line in bad.stderr.splitlines() if line.startswith("error:")] == [
        "error: bad_uri.py: mlflow_tracking_uri: expected an MLflow tracking URI (http://HOST:PORT, https://..., "
        "sqlite:///PATH), got 'mlflow-server:5000'"], bad.stderr
    assert not [path for path in (workdir / "experiments").rglob("*") if path.is_file()]  # the announced folder gone
