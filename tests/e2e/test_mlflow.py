"""Runs logged to a real MLflow tracking server (`mlflow server`, SQLite, 127.0.0.1), checked through its REST API and
its UI in headless Chromium: one MLflow run per experiment across kill -9 and `train --resume`, each epoch once;
each exported version a logged model, the best registered and `@champion`, served from the alias; a server that
stops mid-run costs the run nothing and loses nothing (`mlflow sync` sends what the run kept, once); a sweep of two
workers is one parent run with its trials."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from experiments_manager.run.evaluations import newest_evaluation

from conftest import (HELD_AT_THE_SECOND_EPOCH, RAN_AS, REAL_PARTS_REQUIRED, REPO, cli_command, cli_env, free_port,
                      read_run, run_command, settings_variant, start_forked, wait_for)
from test_resume import OutputReader, checkpoints, the_experiment

pytestmark = pytest.mark.xdist_group("mlflow")  # one server for the module's tests: one worker runs them


class MlflowServer:
    """A real `mlflow server` (SQLite backend, artifacts proxied) in `folder`, on a port of its own; `stop` and
    `start` again keep its database."""

    def __init__(self, folder):
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self):
        mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
        log = open(self.folder / "server.log", "a")
        self.process = subprocess.Popen(
            [mlflow, "server", "--backend-store-uri", f"sqlite:///{self.folder}/mlflow.db", "--artifacts-destination",
             str(self.folder / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_for(self.healthy, 120, "the MLflow server's /health", 0.2)
        assert self.process.poll() is None, (self.folder / "server.log").read_text()

    def healthy(self):
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return self.process.poll() is not None

    def stop(self):
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        wait_for(self.port_free, 60, "the MLflow server's port to be let go (its uvicorn child exits after it)", 0.2)

    def port_free(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
            return False
        except OSError:
            return True

    def get(self, path, **query):
        with urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(query)}", timeout=30) as response:
            return json.loads(response.read())

    def post(self, path, body):
        request = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def runs_of(self, folder):
        """The MLflow runs tagged with the experiment folder (every experiment of the server)."""
        experiments = self.post("/api/2.0/mlflow/experiments/search", {"max_results": 100})["experiments"]
        return self.post("/api/2.0/mlflow/runs/search", {
            "experiment_ids": [experiment["experiment_id"] for experiment in experiments],
            "filter": f"tags.`experiments_manager.folder` = '{folder.resolve()}'"}).get("runs", [])

    def history(self, run_id, key):
        return [(point["step"], point["value"]) for point in self.get(
            "/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key=key).get("metrics", [])]

    def logged_models(self, experiment_id, folder):
        return self.post("/api/2.0/mlflow/logged-models/search", {
            "experiment_ids": [experiment_id],
            "filter": f"tags.`experiments_manager.folder` = '{folder.resolve()}'"}).get("models", [])

    def registered_versions(self, name):
        return self.get("/api/2.0/mlflow/model-versions/search", filter=f"name = '{name}'").get("model_versions", [])

    def champion(self, name):
        return self.get("/api/2.0/mlflow/registered-models/alias", name=name, alias="champion")["model_version"]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """The module's MLflow server, started once."""
    if not os.path.exists(os.path.join(os.path.dirname(sys.executable), "mlflow")):
        if REAL_PARTS_REQUIRED:
            pytest.fail("mlflow is not installed (pip install 'experiments_manager[mlflow]')")
        pytest.skip("mlflow is not installed (pip install 'experiments_manager[mlflow]')")
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    yield server
    server.stop()


def _tags(entity):
    return {tag["key"]: tag["value"] for tag in entity.get("tags") or entity.get("data", {}).get("tags", [])}


def _cli(workdir, *arguments, env=None):
    return run_command(arguments, cwd=workdir, env={**cli_env(), **(env or {})},
                       capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, mlflow_server):
    """A run logged to the server, killed with -9 at its second epoch and resumed (3 epochs), its versions registered
    as `lab_curve`: (work folder, run folder, the resume's CompletedProcess)."""
    workdir = tmp_path_factory.mktemp("lab")
    shutil.copytree(REPO / "examples", workdir / "examples")
    settings = settings_variant(workdir, "held.py", [
        *HELD_AT_THE_SECOND_EPOCH, f"mlflow_tracking_uri = {mlflow_server.url!r}",
        "mlflow_experiment_name = 'lab regression'", "mlflow_registered_model_name = 'lab_curve'"])
    (workdir / "hold").touch()
    process = start_forked(["train", "-u", str(settings), "--hparam", "nbEpoch=3"], cwd=workdir,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = OutputReader(process)
        root = wait_for(lambda: the_experiment(workdir), 120, "the experiment folder")
        wait_for(lambda: checkpoints(root) or process.poll() is not None, 180, "epoch 1's checkpoint")
        assert process.poll() is None, output.text()
    finally:
        process.kill()  # kill -9 at the second epoch's start: epoch 1 is the run's
        process.wait()
    (workdir / "release").touch()
    resumed = _cli(workdir, "train", "--resume", str(root))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    return workdir, root, resumed


@pytest.mark.slow
@pytest.mark.claim("`train --mlflow URI`: one MLflow run per experiment for its whole life, every epoch's metrics at "
                   "step = epoch exactly once, also across kill -9 and `train --resume`")
def test_a_run_killed_and_resumed_is_one_mlflow_run_with_every_epoch_once(mlflow_server, lab):
    workdir, root, resumed = lab
    (mlflow_run,) = mlflow_server.runs_of(root)  # one run, found by the folder: the resume continued it
    info = read_run(root)
    assert info["mlflow"]["run_id"] == mlflow_run["info"]["run_id"]
    assert (f"MLflow run:        {mlflow_server.url}/#/experiments/{info['mlflow']['experiment_id']}/runs/"
            f"{info['mlflow']['run_id']}") in resumed.stdout, resumed.stdout
    assert mlflow_run["info"]["status"] == "FINISHED" and mlflow_run["info"]["run_name"] == root.name
    experiment = mlflow_server.get("/api/2.0/mlflow/experiments/get", experiment_id=info["mlflow"]["experiment_id"])
    assert experiment["experiment"]["name"] == "lab regression"
    params = {param["key"]: param["value"] for param in mlflow_run["data"]["params"]}
    assert params["nbEpoch"] == "3" and params["settings_file"] == "held.py", params
    history = mlflow_server.history(info["mlflow"]["run_id"], "val_loss")
    assert [step for step, _ in history] == [1, 2, 3], history  # each epoch once
    csv = np.genfromtxt(root / "history.csv", delimiter=",", names=True)
    np.testing.assert_allclose([value for _, value in history], csv["val_loss"], rtol=1e-6)
    assert _tags(mlflow_run)["attempt"] == "2"  # the resume's
    artifacts = {item["path"] for item in mlflow_server.get("/api/2.0/mlflow/artifacts/list",
                                                            run_id=info["mlflow"]["run_id"])["files"]}
    assert {"run.json", "history.csv", "training_curves.png", "experiment_settings.py"} <= artifacts, artifacts


@pytest.mark.slow
@pytest.mark.claim("each exported version is a logged model of its run at its epoch, each once across kill -9; a "
                   "version better than the run's earlier ones is registered (the settings' "
                   "`mlflow_registered_model_name`) and `@champion` names the run's best")
def test_each_version_is_a_logged_model_and_the_best_is_the_champion(mlflow_server, lab):
    workdir, root, resumed = lab
    info = read_run(root)
    records = info["version_records"]
    models = mlflow_server.logged_models(info["mlflow"]["experiment_id"], root)
    by_version = {_tags(model["info"])["export_version"]: model for model in models}
    assert sorted(by_version) == sorted(records) and len(models) == len(records), (models, records)  # each once
    for version, model in by_version.items():
        epoch = records[version]["epoch"]
        assert model["info"]["status"] == "LOGGED_MODEL_READY" and model["info"]["source_run_id"] == \
            info["mlflow"]["run_id"] and _tags(model["info"])["epoch"] == str(epoch)
        metrics = {metric["key"]: metric for metric in model["data"]["metrics"]}
        assert metrics["val_loss"]["step"] == epoch  # linked to its epoch's metrics
        assert metrics["val_loss"]["value"] == pytest.approx(records[version]["value"])
    registered = mlflow_server.registered_versions("lab_curve")
    values = [float(_tags(version)["value"]) for version in sorted(
        registered, key=lambda version: int(_tags(version)["export_version"]))]
    assert values and values == sorted(values, reverse=True), values  # each one better than the run's earlier ones
    best = min(records, key=lambda version: records[version]["value"])
    champion = mlflow_server.champion("lab_curve")
    assert _tags(champion)["export_version"] == best and records[best]["epoch"] == info["best_epoch"], champion


@pytest.mark.slow
@pytest.mark.claim("`serve --model models:/NAME@champion` serves the registered version the alias names, "
                   "downloaded from the server, with the answers of the run's best version; `evaluate "
                   "models:/NAME@champion` evaluates that version in its run")
def test_serve_answers_from_the_champion_alias(mlflow_server, lab, tmp_path):
    import requests

    import experiments_manager as em
    from serving_helpers import X

    workdir, root, resumed = lab
    champion = mlflow_server.champion("lab_curve")
    bad = _cli(workdir, "serve", "--model", "models:/lab_curve@nobody", "--mlflow", mlflow_server.url)
    assert bad.returncode == 2 and bad.stderr.strip().startswith(
        "error: --model: models:/lab_curve@nobody names no model version at"), bad.stderr
    server = subprocess.Popen(cli_command("serve", "--model", "models:/lab_curve@champion", "--grpc-port", "0",
                                          "--rest-port", "0"),
                              cwd=workdir, env={**cli_env(), "MLFLOW_TRACKING_URI": mlflow_server.url,
                                                "XDG_CACHE_HOME": str(tmp_path)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = OutputReader(server)
        rest = wait_for(lambda: next((line.split("REST: ")[1].split("/v1/")[0] for line in output.lines
                                      if line.startswith("REST: ")), None) or server.poll(), 120, "the REST line")
        assert server.poll() is None, output.text()
        served = requests.post(f"{rest}/v1/models/lab_curve/labels/champion:predict",
                               json={"instances": X.tolist()}, timeout=30)
        assert served.status_code == 200, served.text
        status = requests.get(f"{rest}/v1/models/lab_curve", timeout=10).json()["model_version_status"]
        assert [entry["version"] for entry in status] == [champion["version"]]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    expected = em.load(root)(X, training=False).numpy()  # the run's best version, in this process
    np.testing.assert_allclose([row["prediction"] for row in served.json()["predictions"]], expected, rtol=1e-5)
    (downloaded,) = (tmp_path / "experiments_manager/mlflow-models").glob(f"m-*/{champion['version']}")
    best = root / "exported_models" / _tags(champion)["export_version"]
    assert (downloaded / "checksums.sha256").read_text() == (best / "checksums.sha256").read_text()

    evaluated = _cli(workdir, "evaluate", "models:/lab_curve@champion", "--data", "generated",
                     env={"MLFLOW_TRACKING_URI": mlflow_server.url})  # the alias resolved to the run and version
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert (f"models:/lab_curve@champion: version {champion['version']} of lab_curve, exported version "
            f"{best.name} of {root}") in evaluated.stdout
    assert newest_evaluation(root, {})["version"] == int(best.name)


@pytest.mark.slow
@pytest.mark.claim("the run's page in the MLflow UI (headless Chromium) shows its val_loss chart, one point an epoch")
def test_the_mlflow_ui_shows_the_runs_val_loss_chart(mlflow_server, lab, browser):
    workdir, root, resumed = lab
    info = read_run(root)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(f"{mlflow_server.url}/#/experiments/{info['mlflow']['experiment_id']}/runs/"
                  f"{info['mlflow']['run_id']}/model-metrics")
        page.get_by_placeholder("Search metric charts").fill("val_loss", timeout=90_000)
        page.get_by_text("val_loss", exact=True).first.wait_for(state="visible", timeout=60_000)
        lines = page.locator(".js-line")
        lines.first.wait_for(timeout=60_000)
        drawn = [lines.nth(index).get_attribute("d") for index in range(lines.count())]
        assert any(path.count("L") == 2 for path in drawn), drawn  # val_loss: 3 epochs, 2 segments
    except BaseException:
        artifacts = REPO / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        page.screenshot(path=str(artifacts / "mlflow_run_page.png"))
        raise
    finally:
        page.close()


@pytest.mark.slow
@pytest.mark.claim("a tracking server that stops mid-run costs the run nothing: one warning line, the run finishes, "
                   "what it could not send stays in its folder; `mlflow sync RUN` sends it, twice sends nothing twice")
def test_a_server_stopped_mid_run_loses_nothing_and_mlflow_sync_sends_it_once(mlflow_server, workdir, start_cli):
    settings = settings_variant(workdir, "held.py", [*HELD_AT_THE_SECOND_EPOCH, "mlflow_registered_model_name = "
                                                     "'stopped_mid_run'"])
    (workdir / "hold").touch()
    process = start_cli("train", "-u", str(settings), "--hparam", "nbEpoch=3", "--mlflow", mlflow_server.url,
                        warm=True)
    output = OutputReader(process)
    root = wait_for(lambda: the_experiment(workdir), 120, "the experiment folder")
    run_id = wait_for(lambda: read_run(root).get("mlflow", {}).get("run_id") or process.poll(), 180, "the MLflow run")
    wait_for(lambda: mlflow_server.history(run_id, "val_loss") or process.poll(), 60, "epoch 1 at the server")
    mlflow_server.stop()  # while the run waits at its second epoch
    try:
        (workdir / "release").touch()
        assert process.wait(timeout=180) == 0, output.text()
        said = [line for line in output.text().splitlines() if "does not answer" in line]
        assert len(said) == 1 and mlflow_server.url in said[0], output.text()
        assert f"send them with {RAN_AS} mlflow sync {root.relative_to(workdir)}" in output.text()
    finally:
        mlflow_server.start()
    kept = [json.loads(line) for line in (root / "mlflow_outbox.jsonl").read_text().splitlines()]
    assert [entry["kind"] for entry in kept if entry["kind"] in ("start", "metrics", "end")] == [
        "start", "metrics", "metrics", "metrics", "end"], kept
    sent_before = json.loads((root / "mlflow_sent.json").read_text())["sent_through"]
    assert 0 < sent_before < len(kept)

    assert f"record(s) not sent yet: {RAN_AS} mlflow sync" in output.text()  # the closing report

    resumed = _cli(workdir, "train", "--resume", str(root))  # a finished run, run again: what it kept is sent
    said = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0 and "already finished" in said, said
    assert f"MLflow: {root}: {len(kept) - sent_before} record(s) sent to {mlflow_server.url}" in said, said
    (mlflow_run,) = mlflow_server.runs_of(root)
    assert mlflow_run["info"]["run_id"] == run_id and mlflow_run["info"]["status"] == "FINISHED"
    assert [step for step, _ in mlflow_server.history(run_id, "val_loss")] == [1, 2, 3]
    versions = read_run(root)["version_records"]
    assert len(mlflow_server.logged_models(mlflow_run["info"]["experiment_id"], root)) == len(versions)

    again = _cli(workdir, "mlflow", "sync", str(root), "--mlflow", mlflow_server.url)
    assert again.returncode == 0 and f"{root}: nothing to send" in again.stdout, again.stdout + again.stderr
    assert [step for step, _ in mlflow_server.history(run_id, "val_loss")] == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.claim("a compute node without a route to the server: the run finishes, `mlflow sync FOLDER` later "
                   "makes its one MLflow run")
@pytest.mark.claim("no MLflow record is lost in silence: the closing report counts what is unsent, `train --resume` of "
                   "a finished run sends it, a damaged outbox is named by line and rebuilt from the run's files")
@pytest.mark.claim("tracking messages say the cause: this machine's disk, not the server; a long error's end (where "
                   "the cause is); a server's client error (a URI with a path) ends `mlflow sync` with exit 2 and its "
                   "answer", note="(the URI with a path)")
def test_a_run_offline_from_the_start_is_sent_by_mlflow_sync(mlflow_server, workdir):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    trained = _cli(workdir, "train", "-u", "examples/regression/mysettings_curve_fitting.py", "--hparam", "nbEpoch=2",
                   "--mlflow", dead)
    print(f"trained with the server down in {time.monotonic() - started:.1f} s")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    said = [line for line in trained.stderr.splitlines() if "does not answer" in line]
    assert len(said) == 1 and dead in said[0], trained.stderr
    root = the_experiment(workdir)
    assert "run_id" not in read_run(root)["mlflow"]
    assert f"MLflow run:        not sent yet: {RAN_AS} mlflow sync {root.relative_to(workdir)}" in \
        trained.stdout

    outbox = root / "mlflow_outbox.jsonl"  # damaged on its way: epoch 1's line junk, the end cut off
    lines = outbox.read_bytes().split(b"\n")
    first_epoch = next(number for number, line in enumerate(lines) if b'"kind":"metrics"' in line)
    lines[first_epoch] = b"\x00\x00 junk {"
    outbox.write_bytes(b"\n".join(line for line in lines if b'"kind":"end"' not in line))
    prefixed = _cli(workdir, "mlflow", "sync", str(root), "--mlflow", f"{mlflow_server.url}/mlflow")
    assert prefixed.returncode == 2, prefixed.stdout + prefixed.stderr  # the server's answer, not "does not answer"
    assert "refused its records (it answered 404: " in prefixed.stderr and "server's root, no path" in prefixed.stderr
    assert (f"{root}: {outbox}: line(s) {first_epoch + 1} damaged (not a record): left out; 2 record(s) it lacked "
            "rebuilt from run.json and history.csv") in prefixed.stdout, prefixed.stdout  # said before the refusal
    synced = _cli(workdir, "mlflow", "sync", str(root.parent), "--mlflow", mlflow_server.url)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    (mlflow_run,) = mlflow_server.runs_of(root)
    assert read_run(root)["mlflow"]["run_id"] == mlflow_run["info"]["run_id"]
    assert mlflow_run["info"]["status"] == "FINISHED"  # the end that was cut off, rebuilt
    history = dict(mlflow_server.history(mlflow_run["info"]["run_id"], "val_loss"))  # epoch 1 rebuilt: sent last
    assert sorted(mlflow_server.history(mlflow_run["info"]["run_id"], "val_loss")) == sorted(history.items())
    rows = np.genfromtxt(root / "history.csv", delimiter=",", names=True)
    assert history == pytest.approx({int(row["epoch"]): float(row["val_loss"]) for row in rows})


@pytest.mark.slow
@pytest.mark.claim("`sweep --mlflow URI`: the trials of a sweep's workers are children of one run of the sweep, "
                   "which holds their best value and stands FINISHED once none runs")
def test_a_sweep_of_two_workers_is_one_parent_run_with_its_trials(mlflow_server, workdir):
    swept = _cli(workdir, "sweep", "-u", "examples/regression/mysettings_curve_fitting.py", "--max-evals", "2",
                 "--seed", "5", "--workers", "2", "--hparam", "nbEpoch=1", "--mlflow", mlflow_server.url)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    (sweep,) = (workdir / "experiments/examples/curve_fitting").glob("*_sweep_*")
    trials = sorted(path.parent for path in sweep.glob("*/run.json"))
    assert len(trials) == 2
    (parent,) = mlflow_server.runs_of(sweep)  # one, though both workers' first trials started together
    assert parent["info"]["run_name"] == sweep.name and parent["info"]["status"] == "FINISHED", parent["info"]
    children = [mlflow_server.runs_of(trial)[0] for trial in trials]
    assert {child["info"]["run_id"] for child in children} == {read_run(trial)["mlflow"]["run_id"] for trial in trials}
    for child in children:
        tags = _tags(child)
        assert tags["mlflow.parentRunId"] == parent["info"]["run_id"] and child["info"]["status"] == "FINISHED"
        metrics = {metric["key"] for metric in child["data"]["metrics"]}
        assert {"epochs_completed", "device_hours"} <= metrics, metrics
    best = min(read_run(trial)["best_value"] for trial in trials)
    assert max(mlflow_server.history(parent["info"]["run_id"], "best_val_loss")) == (2, pytest.approx(best))
    registered = mlflow_server.registered_versions("model_curve_fitting")  # also other tests' runs
    champion = mlflow_server.champion("model_curve_fitting")
    assert float(_tags(champion)["value"]) == min(float(_tags(version)["value"]) for version in registered)


@pytest.mark.claim("`--mlflow` takes a tracking server's http(s) URI; a store's (sqlite:///, file:, a path) is one "
                   "line before anything is written (MLflow's client would write mlflow.db and mlruns/ in the current "
                   "folder)")
def test_a_bad_tracking_uri_is_one_line_and_creates_nothing(workdir):
    bad = _cli(workdir, "train", "-u", "examples/regression/mysettings_curve_fitting.py", "--mlflow", "ftp://host/x")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: --mlflow: expected an MLflow tracking server's URI "
                                               "(http://HOST:PORT, https://...), got 'ftp://host/x'"], bad.stderr
    assert not (workdir / "experiments").exists()
    settings = settings_variant(workdir, "bad_uri.py", ["mlflow_tracking_uri = 'mlflow-server:5000'",
                                                        "mlflow_registered_model_name = 'lab/curve'"])
    bad = _cli(workdir, "train", "-u", str(settings))
    assert bad.returncode == 2 and [line for line in bad.stderr.splitlines() if line.startswith("error:")] == [
        "error: bad_uri.py: mlflow_registered_model_name: expected a name without '/', '..', ':', '@', '%' or spaces "
        "(or None), "
        "got 'lab/curve'"], bad.stderr  # the settings are checked first
    settings = settings_variant(workdir, "bad_uri.py", ["mlflow_tracking_uri = 'mlflow-server:5000'"])
    bad = _cli(workdir, "train", "-u", str(settings))
    assert bad.returncode == 2 and [line for line in bad.stderr.splitlines() if line.startswith("error:")] == [
        "error: bad_uri.py: mlflow_tracking_uri: expected an MLflow tracking server's URI (http://HOST:PORT, "
        "https://...), got 'mlflow-server:5000'"], bad.stderr
    assert not [path for path in (workdir / "experiments").rglob("*") if path.is_file()]  # the announced folder gone
    bad = _cli(workdir, "sweep", "-u", "examples/regression/mysettings_curve_fitting.py", "--max-evals", "1",
               "--mlflow", "localhost:5000")
    assert bad.returncode == 2 and [line for line in bad.stderr.splitlines() if line.startswith("error:")] == [
        "error: --mlflow: expected an MLflow tracking server's URI (http://HOST:PORT, https://...), got "
        "'localhost:5000'"], bad.stderr
    assert not [path for path in (workdir / "experiments").rglob("*") if path.is_file()]
    for store in ("sqlite:///lab/mlflow.db", "file:./mlruns", "./mlruns"):  # MLflow's client would write them here
        bad = _cli(workdir, "train", "-u", "examples/regression/mysettings_curve_fitting.py", "--mlflow", store)
        assert bad.returncode == 2 and [line for line in bad.stderr.splitlines() if line.startswith("error:")] == [
            f"error: --mlflow: {store!r} is a store, not a tracking server: serve it with `mlflow server "
            f"--backend-store-uri {store}` and give the server's http://HOST:PORT"], bad.stderr
    assert not [*workdir.rglob("mlflow.db"), *workdir.rglob("mlruns")]
