"""The serving commands as a user runs them: serve, predict, train --serve, and the tensorflow_model_server launcher."""

import queue
import re
import shutil
import signal
import socket
import threading
import time

import grpc
import numpy as np
import pytest
import requests

from conftest import (RAN_AS, REGRESSION_SETTINGS, cli_env, read_run, run_command, single_experiment,
                      wait_for)
from serving_helpers import X, grpc_stubs, predict_request
from experiments_manager.serving.config import ModelSource


class OutputReader:
    """Collects a background process' output lines; waits for one matching a pattern."""

    def __init__(self, process):
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process):
        for line in process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s; output:\n" + "\n".join(self.seen))


@pytest.mark.claim('`train -u SETTINGS` trains an experiment')
@pytest.mark.claim('`serve --model_dir EXP` serves the experiment')
@pytest.mark.claim('`--grpc-port`, `--rest-port`')
@pytest.mark.claim('`--host` (default 127.0.0.1)', note='(the printed address is 127.0.0.1)')
@pytest.mark.claim('SIGTERM stops the server cleanly')
@pytest.mark.claim('`train --resume FOLDER` continues an experiment', note='(`--more-epochs 1` after 2 epochs)')
def test_train_then_serve_then_resume_from_the_command_line(run_cli, start_cli, workdir):
    """The end-to-end check of `make test-fast` (not marked slow): `train` 2 epochs, `serve` the run and get the
    answers `em.load` computes in this process over REST, SIGTERM stops the server cleanly, then `train --resume
    --more-epochs 1` goes on in the same folder to epoch 3."""
    import experiments_manager as em

    trained = run_cli("train", "-u", REGRESSION_SETTINGS, "--hparam", "nbEpoch=2")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    run = single_experiment(workdir / "experiments/examples/curve_fitting")

    process = start_cli("serve", "--model_dir", str(run), "--grpc-port", "0", "--rest-port", "0", warm=True)
    output = OutputReader(process)
    rest = output.wait_for(r"REST: (http://127\.0\.0\.1:\d+)/v1/models/model_curve_fitting", 90)[1]
    answer = requests.post(f"{rest}/v1/models/model_curve_fitting:predict", json={"instances": X.tolist()}, timeout=10)
    assert answer.status_code == 200, answer.text
    expected = em.load(run)(X, training=False).numpy()
    np.testing.assert_allclose([row["prediction"] for row in answer.json()["predictions"]], expected, rtol=1e-5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    output.wait_for("stopping the server", 5)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{rest}/v1/models/model_curve_fitting", timeout=5)

    resumed = run_cli("train", "--resume", str(run), "--more-epochs", "1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert single_experiment(workdir / "experiments/examples/curve_fitting") == run
    info = read_run(run)
    assert info["status"] == "finished" and info["epochs_completed"] == 3, info
    history = np.genfromtxt(run / "history.csv", delimiter=",", names=True)
    assert list(history["epoch"].astype(int)) == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.claim('`--grpc-port`, `--rest-port`')
def test_serve_refuses_a_busy_port_and_bad_arguments(run_cli, trained):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("serve", "--model_dir", str(trained.dir), "--grpc-port", str(port), "--rest-port", "0")
    assert result.returncode == 2
    assert f"error: --grpc-port: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr

    bad = run_cli("serve", "--model_dir", str(trained.dir), "--grpc-port", "70000", "--max_batch_size", "0")
    assert bad.returncode == 2
    assert "error: --grpc-port: expected a port in 0..65535, got 70000" in bad.stderr
    assert "error: --max_batch_size: expected an int > 0, got 0" in bad.stderr


@pytest.mark.claim('`train --serve` refuses bad server flags before creating anything')
def test_train_serve_refuses_bad_server_flags_before_creating_anything(run_cli, workdir):
    result = run_cli("train", "-u", REGRESSION_SETTINGS, "--serve", "--rest-port", "-1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: --rest-port: expected a port in 0..65535, got -1"
    assert not (workdir / "experiments").exists()


def client_variant(experiment, tmp_path, lines):
    """A copy of the trained experiment whose settings copy gets extra lines (a different Client_IO...)."""
    copy = tmp_path / "experiment"
    shutil.copytree(experiment, copy)
    settings = copy / "experiment_settings.py"
    settings.write_text(settings.read_text() + "\n" + "\n".join(lines) + "\n")
    return copy


COUNTING_CLIENT = [
    "class Client_IO:",
    "    def __init__(self, clientInitSpecs, debugMode):",
    "        self.marker = clientInitSpecs['model_dir'] + '/finalized'",
    "    def getInputData(self, idx):",
    "        if idx == 4:",
    "            raise StopIteration",
    "        return {'input': np.full((2, 1), idx, np.float32)}",
    "    def decodeResponse(self, result):",
    "        print('answer', list(result.outputs['prediction'].float_val))",
    "    def finalize(self):",
    "        open(self.marker, 'w').write('called')",
]


@pytest.mark.slow
@pytest.mark.claim("`predict` runs the settings' `Client_IO` against `--server HOST:PORT`")
@pytest.mark.claim('`--predict_stream N`; N < 0 until `getInputData` raises StopIteration')
@pytest.mark.claim('`finalize()` is always called')
@pytest.mark.claim('original spelling `--predict_stream=N --model_dir=DIR`')
def test_predict_streams_until_stop_iteration_and_always_finalizes(run_cli, model_server, base_path, trained, tmp_path):
    server = model_server([ModelSource(trained.model_name, base_path)])
    experiment = client_variant(trained.dir, tmp_path, COUNTING_CLIENT)

    result = run_cli("predict", "--model_dir", str(experiment), "--predict_stream", "-1", "--server", server.grpc_address)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("answer [") == 4
    assert "4 requests answered by model_curve_fitting versions [1]" in result.stdout
    assert (experiment / "finalized").read_text() == "called"

    # the original framework's spelling: no sub-command, --predict_stream=N
    legacy = run_cli("--predict_stream=2", f"--model_dir={experiment}", "--server", server.grpc_address)
    assert legacy.returncode == 0 and legacy.stdout.count("answer [") == 2


@pytest.mark.slow
@pytest.mark.claim('a refused request: one line, exit 1')
def test_predict_ends_with_one_line_when_the_server_refuses_a_request(run_cli, model_server, base_path, trained,
                                                                      tmp_path):
    server = model_server([ModelSource(trained.model_name, base_path)])
    wrong_width = [line.replace("np.full((2, 1), idx", "np.full((2, 3), idx") for line in COUNTING_CLIENT]
    experiment = client_variant(trained.dir, tmp_path, wrong_width)
    result = run_cli("predict", "--model_dir", str(experiment), "--predict_stream", "3", "--server", server.grpc_address)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "INVALID_ARGUMENT" in last and "expected shape" in last, last
    assert (experiment / "finalized").read_text() == "called"


@pytest.mark.slow
@pytest.mark.claim('server down or timeout: one line, exit 1')
@pytest.mark.claim('`finalize()` is always called')
def test_predict_with_the_server_down_or_silent_gives_one_line(run_cli, trained, tmp_path):
    experiment = client_variant(trained.dir, tmp_path, COUNTING_CLIENT + ["serving_client_timeout_int_secs = 1"])
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    down = run_cli("predict", "--model_dir", str(experiment), "--server", f"127.0.0.1:{port}")
    assert down.returncode == 1
    assert down.stderr.strip().splitlines()[-1] == (
        f"error: server 127.0.0.1:{port} not reachable (request 0): is `{RAN_AS} serve` running there?"
    )
    assert (experiment / "finalized").read_text() == "called"
    (experiment / "finalized").unlink()

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        slow = run_cli("predict", "--model_dir", str(experiment), "--server", f"127.0.0.1:{silent.getsockname()[1]}")
    assert slow.returncode == 1
    assert "no answer from" in slow.stderr and "within 1 s (settings: serving_client_timeout_int_secs)" in slow.stderr
    assert (experiment / "finalized").read_text() == "called"
    assert "Traceback" not in slow.stderr + down.stderr
    assert time.monotonic() - started < 60


# The example with a version every epoch, whose epochs (and its end) wait until the test has seen the server answer
# as many versions as epochs are done (a file the test writes): training cannot outrun the serve process' start-up,
# and the test sees each version the way a client does, while training goes on.
PACED_BY_THE_SERVER = """
save_only_last_best_model = False

class _WaitForTheServer(tf.keras.callbacks.Callback):
    def wait_for(self, versions):
        import pathlib, time
        answered, deadline = pathlib.Path({answered!r}), time.monotonic() + 180
        while int((answered.read_text() if answered.exists() else "") or 0) < versions:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer {{versions}} versions within 180 s")
            time.sleep(0.05)

    def on_epoch_begin(self, epoch, logs=None):
        self.wait_for(epoch)

    def on_train_end(self, logs=None):
        self.wait_for(self.params["epochs"])

def addon_callbacks(model, train_samples, val_samples):
    return {{"wait_for_the_server": _WaitForTheServer()}}
"""


@pytest.mark.slow
@pytest.mark.claim(
    'the server picks up each new version while training still runs',
    note="(a version every epoch; each epoch waits, through the settings' own `addon_callbacks`, until the test "
         'has seen the server list and answer the versions so far, so all 3 are answered during training whatever '
         "the server's start-up time; each answer as that version computes in-process)")
@pytest.mark.claim(
    '`train --serve`: a separate server process, `serving.log`, addresses in the training output, stops with '
    'training')
def test_train_serve_answers_while_versions_advance(start_cli, workdir):
    answered_file = workdir / "answered"
    settings = workdir / REGRESSION_SETTINGS
    settings.write_text(settings.read_text() + PACED_BY_THE_SERVER.format(answered=str(answered_file)))
    process = start_cli(
        "train", "-u", REGRESSION_SETTINGS, "--hparam", "nbEpoch=3", "--serve", "--grpc-port", "0", "--rest-port", "0",
        "--file_system_poll_wait_seconds", "0.2", warm=True,
    )
    output = OutputReader(process)
    grpc_address = output.wait_for(r"\[serve\] gRPC: (127\.0\.0\.1:\d+)", 120)[1]
    rest = output.wait_for(r"\[serve\] REST: (http://127\.0\.0\.1:\d+)/v1/models/model_curve_fitting", 30)[1]
    prediction, _ = grpc_stubs(type("Server", (), {"grpc_address": grpc_address}))
    seen = set()
    answers = {}  # version -> what it answered for x

    def answered_versions():
        try:
            statuses = requests.get(f"{rest}/v1/models/model_curve_fitting", timeout=5).json()
            seen.update(int(s["version"]) for s in statuses.get("model_version_status", []) if s["state"] == "AVAILABLE")
            answer = prediction.Predict(predict_request("model_curve_fitting", {"input": X}), timeout=5)
            version = answer.model_spec.version.value
            answers[version] = np.array(answer.outputs["prediction"].float_val)
            if version in seen:  # listed AVAILABLE by REST and answered by gRPC: training may go on
                answered_file.write_text(str(len(answers.keys() & seen)))
        except (requests.ConnectionError, grpc.RpcError):
            pass
        return process.poll() is not None

    wait_for(answered_versions, 240, "training to end", interval=0.1)
    assert process.returncode == 0, "\n".join(output.seen)
    experiment = next((workdir / "experiments/examples/curve_fitting").glob("*/run.json")).parent
    assert read_run(experiment)["status"] == "finished"
    # each epoch's version was listed and answered by the server while training went on
    assert sorted(answers) == [1, 2, 3] and seen == {1, 2, 3}, f"versions answered: {sorted(answers)}, seen {seen}"
    import tensorflow as tf

    for version, answered in answers.items():  # each answer is what that version computes, loaded in-process
        served = tf.saved_model.load(str(experiment / "exported_models" / str(version))).signatures["serving_default"]
        expected = served(input=tf.constant(X))["prediction"].numpy().ravel()
        np.testing.assert_allclose(answered, expected, rtol=1e-5, atol=1e-6)
    assert "serving version" in (experiment / "serving.log").read_text()
    with pytest.raises(requests.ConnectionError):  # the server stopped with the training
        requests.get(f"{rest}/v1/models/model_curve_fitting", timeout=5)


FAKE_BINARY = """#!/bin/sh
echo "$0 $*" > "$RECORD"
for argument in "$@"; do
  case "$argument" in
    --model_config_file=*) cp "${argument#*=}" "$RECORD.models.config" ;;
    --batching_parameters_file=*) cp "${argument#*=}" "$RECORD.batching.config" ;;
  esac
done
"""


@pytest.fixture
def fake_tools(tmp_path):
    """A bin folder for stand-ins of binaries we cannot install here; they record how they were called."""
    folder = tmp_path / "bin"
    folder.mkdir()

    def add(name):
        path = folder / name
        path.write_text(FAKE_BINARY)
        path.chmod(0o755)
        return path

    return folder, add


def run_with_path(folder, record, *arguments):
    env = cli_env()
    env["PATH"] = f"{folder}:{env['PATH']}"
    env["RECORD"] = str(record)
    return run_command(arguments, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.claim('an experiment uses its own models.config, latest 1', note='(`num_versions == 1`)')
@pytest.mark.claim('`--max_batch_size` default 32, `--batch_timeout_micros` default 1000')
@pytest.mark.claim(
    '`--tensorflow-model-server` runs the binary on PATH with `--port`, `--rest_api_port`, a models.config for '
    'this machine, `--file_system_poll_wait_seconds`, batching flags and file',
    note='(fake binary records its call)')
@pytest.mark.claim('`--dry-run` prints the command and the config files')
def test_tensorflow_model_server_gets_the_same_config_ports_and_batching(fake_tools, trained, tmp_path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    folder, add = fake_tools
    binary = add("tensorflow_model_server")
    record = tmp_path / "called"
    result = run_with_path(
        folder, record, "serve", "--model_dir", str(trained.dir), "--tensorflow-model-server",
        "--grpc-port", "9000", "--rest-port", "9001", "--enable_batching", "--max_batch_size", "64",
    )
    assert result.returncode == 0, result.stderr
    words = record.read_text().split()
    assert words[0] == str(binary)
    assert words[1:3] == ["--port=9000", "--rest_api_port=9001"]
    assert "--file_system_poll_wait_seconds=1" in words and "--enable_batching=true" in words
    assert "--rest_api_timeout_in_ms=30000" in words
    assert any(word.startswith("--model_config_file=") for word in words)
    config = text_format.Parse((tmp_path / "called.models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == "model_curve_fitting" and model.model_platform == "tensorflow"
    assert model.base_path == str((trained.dir / "exported_models").resolve())
    assert model.model_version_policy.latest.num_versions == 1
    batching = (tmp_path / "called.batching.config").read_text()
    assert "max_batch_size { value: 64 }" in batching and "batch_timeout_micros { value: 1000 }" in batching

    dry = run_with_path(folder, record, "serve", "--model_dir", str(trained.dir), "--tensorflow-model-server", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith(f"{binary} --port=") and 'name: "model_curve_fitting"' in dry.stdout


@pytest.mark.claim('`--apptainer-image`: `apptainer exec --bind <base paths> SIF`')
@pytest.mark.claim('a missing binary is one error line')
def test_tensorflow_model_server_from_an_apptainer_image_or_missing(fake_tools, trained, tmp_path):
    folder, add = fake_tools
    runner = add("apptainer")
    image = tmp_path / "tf_server.sif"
    image.write_bytes(b"")
    record = tmp_path / "called"
    result = run_with_path(
        folder, record, "serve", "--model_dir", str(trained.dir), "--tensorflow-model-server", "--apptainer-image", str(image),
    )
    assert result.returncode == 0, result.stderr
    words = record.read_text().split()
    assert words[:3] == [str(runner), "exec", "--bind"]
    assert str((trained.dir / "exported_models").resolve()) in words[3].split(",")
    assert words[4:6] == [str(image), "tensorflow_model_server"]

    missing = run_with_path(tmp_path / "nowhere", record, "serve", "--model_dir", str(trained.dir), "--tensorflow-model-server")
    assert missing.returncode == 2
    assert "error: --tensorflow-model-server: tensorflow_model_server is not on PATH" in missing.stderr
