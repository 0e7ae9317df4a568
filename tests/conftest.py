"""Fixtures: an isolated working directory with the examples, and a way to run the real CLI."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REGRESSION_SETTINGS = "examples/regression/mysettings_curve_fitting.py"


def cli_command(*arguments):
    return [sys.executable, "-m", "experiments_manager", *arguments]


def cli_env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh current directory holding a copy of examples/, as a user's checkout would."""
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def run_cli(workdir):
    """Runs `python -m experiments_manager ARGS...` in the work directory; returns CompletedProcess."""

    def run(*arguments, timeout=300):
        return subprocess.run(
            cli_command(*arguments), cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=timeout
        )

    return run


@pytest.fixture
def start_cli(workdir):
    """Starts the CLI in the background; yields a function returning the Popen. Kills leftovers."""
    processes = []

    def start(*arguments):
        process = subprocess.Popen(
            cli_command(*arguments), cwd=workdir, env=cli_env(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def settings_variant(workdir, name, extra_lines, base=REGRESSION_SETTINGS):
    """Writes a copy of a settings file with lines appended (later assignments win)."""
    source = (workdir / base).read_text()
    path = (workdir / base).with_name(name)
    path.write_text(source + "\n" + "\n".join(extra_lines) + "\n")
    return path.relative_to(workdir)


def single_experiment(working_folder):
    runs = [path.parent for path in Path(working_folder).glob("*/run.json")]
    assert len(runs) == 1, f"expected one experiment in {working_folder}, found {runs}"
    return runs[0]


def read_run(experiment_dir):
    return json.loads((Path(experiment_dir) / "run.json").read_text())


def wait_for(condition, timeout, what, interval=0.05):
    """Polls `condition` until it returns a truthy value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One regression experiment trained in-process for 3 epochs, exporting every epoch.

    Returns a namespace: `dir` (the experiment folder), `model` (the Keras model
    with its final EMA weights, which the last version was exported with),
    `model_name` and `versions`.
    """
    import types

    from experiments_manager import training

    root = tmp_path_factory.mktemp("trained")
    shutil.copytree(REPO / "examples", root / "examples")
    settings = settings_variant(root, "every_epoch.py", ["save_only_last_best_model = False", "nb_train_samples = 400"])
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        outcome = training.train(str(settings), {"nbEpoch": 3})
    assert outcome.status == "finished"
    experiment_dir = root / outcome.experiment.root
    versions = sorted(int(path.name) for path in (experiment_dir / "exported_models").iterdir())
    return types.SimpleNamespace(dir=experiment_dir, model=outcome.model, model_name="model_curve_fitting",
                                 versions=versions)


@pytest.fixture
def base_path(tmp_path, trained):
    """A fresh base path holding a copy of the trained experiment's newest version as version 1."""
    base = tmp_path / "models" / trained.model_name
    base.mkdir(parents=True)
    shutil.copytree(trained.dir / "exported_models" / str(trained.versions[-1]), base / "1")
    return base


def publish_version(base, version, source):
    """Adds a version the way the exporter does: written under a dot name, then renamed."""
    hidden = base / f".tmp-{version}"
    shutil.copytree(source, hidden)
    os.replace(hidden, base / str(version))
    return time.monotonic()


@pytest.fixture
def model_server():
    """Starts in-process ModelServers on free loopback ports; stops them after the test."""
    from experiments_manager.serving.server import ModelServer, ServerOptions

    servers = []

    def start(sources, **options):
        options = {"grpc_port": 0, "rest_port": 0, "poll_seconds": 0.2, **options}
        server = ModelServer(sources, ServerOptions(**options)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(grace_seconds=0)
