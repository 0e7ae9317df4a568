"""`serve --models_dir FOLDER`: every experiment of a working folder served as its own named model, the folder
followed while serving, the model list, class labels in the metadata and the generated models.config."""

import os
import re
import shutil
import signal
import subprocess
import socket
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests

import test_serving_cli
from conftest import cli_env, run_command, settings_variant, start_forked, wait_for
from serving_helpers import X, grpc_stubs, predict_request
from test_serving_cli import OutputReader, run_with_path
from experiments_manager.serving.folder import WorkingFolder, model_name, unique_names

fake_tools = test_serving_cli.fake_tools  # the fixture: stand-ins of binaries that record how they were called

POLL = 2.0  # --model_config_file_poll_wait_seconds of the served folder in these tests
NAME_CHARACTERS = re.compile(r"[A-Za-z0-9._=,-]+")


@pytest.mark.claim(
    "a model's name is its path relative to FOLDER, folders joined by `.`, characters outside `[A-Za-z0-9._=,-]` "
    'turned into `_`, no `..`')
@pytest.mark.claim(
    'two experiments that would get one name: the first served keeps it, the other gets `-` and 8 hex digits of '
    "its path's SHA-1",
    note='(weak: the naming function, not a served collision)')
def test_model_names_follow_the_path_rule_and_are_unique():
    assert model_name("examples/curve_fitting/my_test_2026-11-23--20-43-18_nbEpoch=2") == \
        "examples.curve_fitting.my_test_2026-11-23--20-43-18_nbEpoch=2"
    assert model_name("lr sweep/trial+1/ü") == "lr_sweep.trial_1._"
    assert model_name(".a/b./c..d/e,f=1") == "_a.b_.c._d.e,f=1"  # no part starts or ends with '.', no '..'
    names = unique_names(["a b", "a_b", "x"], {})
    assert names["a b"] == "a_b" and re.fullmatch(r"a_b-[0-9a-f]{8}", names["a_b"]) and names["x"] == "x"
    # a served experiment keeps its name when another that maps to the same one appears
    assert unique_names(["a b", "a_b"], {"a_b": "a_b"})["a_b"] == "a_b"
    assert unique_names(["a b", "a_b"], {"a_b": "a_b"})["a b"].startswith("a_b-")


def copy_experiment(trained, destination):
    """A finished experiment copied into the served folder (as a researcher copies a run in)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(trained.dir, destination)
    return destination


def served_models(rest):
    answer = requests.get(f"{rest}/v1/models", timeout=10)
    assert answer.status_code == 200, answer.text
    return {model["name"]: model for model in answer.json()["models"]}


def config_models(path):
    """name -> base_path of a models.config, parsed with TF Serving's own protos."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse(Path(path).read_text(), model_server_config_pb2.ModelServerConfig())
    return {model.name: model.base_path for model in config.model_config_list.config}


def in_process_answer(version_folder):
    import tensorflow as tf

    served = tf.saved_model.load(str(version_folder)).signatures["serving_default"]
    return served(input=tf.constant(X))["prediction"].numpy().ravel()


def assert_answered(rest, prediction, name, version_folder):
    """REST and gRPC answers of model `name` are what its version computes in-process."""
    expected = in_process_answer(version_folder)
    rows = requests.post(f"{rest}/v1/models/{name}:predict", json={"instances": X.tolist()}, timeout=10)
    assert rows.status_code == 200, rows.text
    np.testing.assert_allclose(np.ravel([row["prediction"] for row in rows.json()["predictions"]]), expected,
                               rtol=1e-5, atol=1e-6)
    answer = prediction.Predict(predict_request(name, {"input": X}), timeout=10)
    assert answer.model_spec.name == name and answer.model_spec.version.value == int(version_folder.name)
    np.testing.assert_allclose(np.array(answer.outputs["prediction"].float_val), expected, rtol=1e-5, atol=1e-6)


def newest_version(experiment):
    return max((path for path in (experiment / "exported_models").iterdir() if path.name.isdigit()),
               key=lambda path: int(path.name))


def grpc_class_names(prediction, name):
    from google.protobuf import struct_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = name
    request.metadata_field.append("class_names")
    response = prediction.GetModelMetadata(request, timeout=10)
    if "class_names" not in response.metadata:
        return None
    names = struct_pb2.ListValue()
    response.metadata["class_names"].Unpack(names)
    return list(names)


@pytest.fixture
def served_folder(workdir, trained):
    """A working folder with two examples (copies of the trained regression run, one under a path with a space)
    and a real sweep of 2 tiny trials."""
    folder = workdir / "lab"
    copy_experiment(trained, folder / "examples" / "curve_fitting" / trained.dir.name)
    copy_experiment(trained, folder / "examples" / "second copy" / trained.dir.name)
    settings = settings_variant(workdir, "tiny_sweep.py", [f"workingFolder = {str(folder / 'sweeps')!r}",
                                                           "nb_train_samples = 100", "nb_val_samples = 50"])
    sweep = run_command(["sweep", "-u", str(settings), "--max-evals", "2", "--seed", "3",
                         "--hparam", "nbEpoch=1"],
                        cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    return folder


@pytest.mark.slow
@pytest.mark.claim(
    "`serve --models_dir FOLDER` serves every experiment below it (example folders, a sweep's trials) as its own "
    'model, answered over REST and gRPC',
    note='(two copied examples and a real 2-trial sweep: each listed, each REST and gRPC answer as its SavedModel '
         'computes in-process)')
@pytest.mark.claim(
    "a model's name is its path relative to FOLDER, folders joined by `.`, characters outside `[A-Za-z0-9._=,-]` "
    'turned into `_`, no `..`',
    note='(a folder with a space)')
@pytest.mark.claim(
    'an experiment is served once it has a version on disk whatever its status, and while it runs; one that ended '
    'without a version is left out',
    note='(a run trained into FOLDER while serving is answered as its version appears)')
@pytest.mark.claim(
    'FOLDER is polled every `--model_config_file_poll_wait_seconds`: an experiment that appears is served without '
    'a restart',
    note="(trained into FOLDER while serving, poll 2 s: answered within 2 periods of its first version's rename)")
@pytest.mark.claim('an experiment removed is dropped: 404 / NOT_FOUND, one log line each for added and dropped')
@pytest.mark.claim('`GET /v1/models`: name, base path, versions, state')
@pytest.mark.claim('a client asks for an experiment by its served name: `predict --model-name NAME`')
@pytest.mark.claim(
    'class labels: `class_names` exported into each version (inside its checksums), returned by REST metadata and '
    'gRPC `GetModelMetadata`',
    note='(a run trained while serving with `class_names`; a run without has none)')
@pytest.mark.claim('... with `--model_dir` too', note='(weak: in-process, the source `serve --model_dir` builds)')
@pytest.mark.claim(
    'the generated models.config is written to FOLDER/models.config (or `--write-models-config`) at start and '
    "whenever the set changes; TF Serving's protos read it",
    note='(exactly the served experiments, at start and after an addition and a removal)')
def test_serve_models_dir_serves_every_experiment_follows_the_folder_and_gives_labels(
        start_cli, model_server, workdir, served_folder, trained):
    from experiments_manager import training
    from experiments_manager.serving.config import source_from_experiment

    folder = served_folder
    experiments = sorted(path.parent for path in folder.rglob("run.json"))
    assert len(experiments) == 4  # two examples, two sweep trials
    process = start_cli("serve", "--models_dir", str(folder), "--grpc-port", "0", "--rest-port", "0",
                        "--file_system_poll_wait_seconds", "0.2", "--model_config_file_poll_wait_seconds", str(POLL),
                        warm=True)
    output = OutputReader(process)
    output.wait_for(rf"models.config of 4 model\(s\) written to {re.escape(str(folder / 'models.config'))}", 90)
    grpc_address = output.wait_for(r"gRPC: (127\.0\.0\.1:\d+)", 90)[1]
    rest = output.wait_for(r"REST: (http://127\.0\.0\.1:\d+)/v1/models  \(the model list", 30)[1]
    prediction, _ = grpc_stubs(type("Server", (), {"grpc_address": grpc_address}))

    # every experiment listed under its path's name, answered over REST and gRPC as its SavedModel computes
    listed = served_models(rest)
    expected_names = {model_name(path.relative_to(folder).as_posix()): path for path in experiments}
    assert set(listed) == set(expected_names), listed
    assert "examples.second_copy." + trained.dir.name in listed
    for name, experiment in expected_names.items():
        assert NAME_CHARACTERS.fullmatch(name)
        assert listed[name]["base_path"] == str((experiment / "exported_models").resolve())
        assert listed[name]["state"] == "AVAILABLE"
        assert listed[name]["versions"] == [int(newest_version(experiment).name)]
        assert_answered(rest, prediction, name, newest_version(experiment))
    # the generated models.config lists exactly the served experiments, as TF Serving's protos read it
    assert config_models(folder / "models.config") == {name: str((path / "exported_models").resolve())
                                                       for name, path in expected_names.items()}
    # no labels in these runs' settings: none in the metadata
    some = next(iter(expected_names))
    assert "class_names" not in requests.get(f"{rest}/v1/models/{some}/metadata", timeout=10).json()["metadata"]

    # a new experiment trained into the folder while serving (its settings give class labels)
    new_settings = settings_variant(workdir, "new_run.py", [f"workingFolder = {str(folder / 'new')!r}",
                                                            "class_names = ['parabola']", "nb_train_samples = 100",
                                                            "nb_val_samples = 50"])
    seen = {}  # what the watcher saw: when the run's first version appeared on disk, when it was listed, answered

    def watch(stop):
        while not stop.is_set():
            runs = list((folder / "new").glob("*/exported_models/1/saved_model.pb"))
            if runs and "version" not in seen:
                seen["version"], seen["run"] = time.monotonic(), runs[0].parents[2]
            if "run" in seen:
                name = model_name(seen["run"].relative_to(folder).as_posix())
                try:
                    answer = requests.post(f"{rest}/v1/models/{name}:predict", json={"instances": [[0.5]]}, timeout=5)
                except requests.ConnectionError:
                    answer = None
                if answer is not None and answer.status_code == 200:
                    seen["answered"], seen["name"] = time.monotonic(), name
                    return
            time.sleep(0.02)

    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(stop,), daemon=True)
    watcher.start()
    outcome = training.train(str(new_settings), {"nbEpoch": 1})
    assert outcome.status == "finished"
    try:
        wait_for(lambda: "answered" in seen, 4 * POLL, "the new experiment to be answered")
    finally:
        stop.set()
    latency = seen["answered"] - seen["version"]
    print(f"new experiment answered {latency:.2f} s after its first version appeared (poll {POLL} s)")
    assert latency <= 2 * POLL, f"answered {latency:.2f} s after its first version appeared (poll {POLL} s)"
    new_name = seen["name"]
    output.wait_for(rf"model {re.escape(new_name)} added: {re.escape(str(seen['run']))}", 10)
    assert_answered(rest, prediction, new_name, newest_version(seen["run"]))
    # the settings' Client_IO asks the folder's server for the experiment by its served name
    asked = run_command(["predict", "--model_dir", str(seen["run"]), "--server", grpc_address,
                         "--model-name", new_name, "--predict_stream", "2"],
                        env=cli_env(), capture_output=True, text=True, timeout=120)
    assert asked.returncode == 0, asked.stderr
    assert f"2 requests answered by {new_name} versions [1] at {grpc_address}" in asked.stdout
    # a client asking for the labels gets them: REST metadata and gRPC GetModelMetadata
    version = newest_version(seen["run"])
    assert "assets.extra/class_names.json" in (version / "checksums.sha256").read_text()  # inside its checksums
    metadata = requests.get(f"{rest}/v1/models/{new_name}/metadata", timeout=10).json()["metadata"]
    assert metadata["class_names"] == ["parabola"]
    assert grpc_class_names(prediction, new_name) == ["parabola"]
    assert grpc_class_names(prediction, some) is None
    single = model_server([source_from_experiment(seen["run"])])  # what `serve --model_dir RUN` serves
    metadata = requests.get(f"{single.rest_url}/v1/models/model_curve_fitting/metadata", timeout=10).json()
    assert metadata["metadata"]["class_names"] == ["parabola"]

    # a deleted experiment disappears from the list, the models.config, REST (404) and gRPC (NOT_FOUND)
    gone = "examples.curve_fitting." + trained.dir.name
    # moved out of FOLDER at once, then removed: an rmtree in place can be scanned half-way (the versions gone, the
    # folder not yet), which the server rightly logs as "no version on disk and not running"
    aside = expected_names[gone].rename(folder.parent / "removed")
    shutil.rmtree(aside)
    wait_for(lambda: gone not in served_models(rest), 2 * POLL + 2, f"{gone} to leave the model list")
    output.wait_for(rf"model {re.escape(gone)} dropped: .* \(its folder is gone\)", 10)
    assert requests.post(f"{rest}/v1/models/{gone}:predict", json={"instances": [[0.5]]}, timeout=10).status_code == 404
    with pytest.raises(grpc.RpcError) as refused:
        prediction.Predict(predict_request(gone, {"input": X}), timeout=10)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    final = set(expected_names) - {gone} | {new_name}
    assert set(served_models(rest)) == final
    wait_for(lambda: set(config_models(folder / "models.config")) == final, 10, "the models.config to follow")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


@pytest.mark.claim('an empty FOLDER is served: one line, and it waits for experiments', note='(in-process)')
@pytest.mark.claim(
    'FOLDER is polled every `--model_config_file_poll_wait_seconds`: an experiment that appears is served without '
    'a restart')
@pytest.mark.claim('an experiment removed is dropped: 404 / NOT_FOUND, one log line each for added and dropped')
@pytest.mark.claim('`GET /v1/models`: name, base path, versions, state')
def test_an_empty_folder_is_served_and_waits_then_experiments_come_and_go(model_server, trained, tmp_path, caplog):
    folder = tmp_path / "lab"
    folder.mkdir()
    working = WorkingFolder(folder, poll_seconds=0.2)
    with caplog.at_level("INFO", logger="experiments_manager"):
        sources = working.update()
    assert sources == [] and f"{folder} holds no experiment to serve yet; looking again every 0.2 s" in caplog.text
    assert config_models(folder / "models.config") == {}  # an empty list, which TF Serving accepts
    server = model_server(sources)
    assert served_models(server.rest_url) == {}
    stop = threading.Event()
    watcher = working.watch(server.replace_sources, stop)
    try:
        copy_experiment(trained, folder / "run a")
        wait_for(lambda: served_models(server.rest_url).get("run_a", {}).get("state") == "AVAILABLE", 10, "run_a")
        assert_answered(server.rest_url, grpc_stubs(server)[0], "run_a", folder / "run a" / "exported_models" /
                        str(trained.versions[-1]))
        shutil.rmtree(folder / "run a")
        wait_for(lambda: served_models(server.rest_url) == {}, 10, "run_a to be dropped")
        assert requests.get(f"{server.rest_url}/v1/models/run_a", timeout=10).status_code == 404
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert not watcher.is_alive()


@pytest.mark.claim(
    'an experiment that cannot be read is skipped with one warning, the others serve',
    note='(weak: the PermissionError and the mid-scan deletion simulated in-process, as root reads any file)')
def test_an_unreadable_or_vanishing_experiment_is_skipped_and_the_others_serve(trained, tmp_path, monkeypatch,
                                                                               caplog):
    import experiments_manager.serving.folder as folder_module

    folder = tmp_path / "lab"
    for name in ("ok", "locked", "vanishing"):
        copy_experiment(trained, folder / name)
    locked_config = folder / "locked" / "models.config"
    assert locked_config.is_file()
    # root reads any file: another user's tight permissions, and a run deleted between two looks, are simulated
    real_read_text, real_present = Path.read_text, folder_module.present_versions

    def read_text(path, *arguments, **keywords):
        if path == locked_config:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_text(path, *arguments, **keywords)

    def present_versions(export_dir):
        if Path(export_dir).parent.name == "vanishing":
            raise FileNotFoundError(2, "No such file or directory", str(export_dir))
        return real_present(export_dir)

    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setattr(folder_module, "present_versions", present_versions)
    working = WorkingFolder(folder, poll_seconds=0)
    with caplog.at_level("INFO", logger="experiments_manager"):
        assert [source.name for source in working.update()] == ["ok"]  # served: the others are skipped
        assert working.update() is None  # the next poll: nothing changed, nothing said again
    assert set(config_models(folder / "models.config")) == {"ok"}
    for name, why in (("locked", "Permission denied"), ("vanishing", "No such file or directory")):
        said = [line for line in caplog.messages if line.startswith(f"{folder / name}: cannot be read")]
        assert len(said) == 1 and why in said[0], caplog.messages
    monkeypatch.undo()  # readable again: served at the next poll
    assert [source.name for source in working.update()] == ["locked", "ok", "vanishing"]


@pytest.mark.claim(
    'a temporary models.config a killed server left in FOLDER is removed at the next start',
    note="(weak: `WorkingFolder.update`, in-process; a live writer's and another file's temporaries kept)")
def test_a_killed_writers_models_config_temporary_is_removed_at_start(trained, tmp_path):
    folder = tmp_path / "lab"
    copy_experiment(trained, folder / "run")
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid no live process has
    leftover = folder / f".models.config.{dead.pid}.0123456789ab.tmp"
    leftover.write_text("model_config_list {")
    live = folder / f".models.config.{os.getpid()}.0123456789ab.tmp"  # a live writer's: kept
    live.write_text("")
    other = folder / f".run.json.{dead.pid}.0123456789ab.tmp"  # not the config's: not this command's to remove
    other.write_text("")
    WorkingFolder(folder, poll_seconds=0).update()
    assert not leftover.exists() and live.exists() and other.exists()


@pytest.mark.claim(
    'requests while the set changes get an answer or 404 / NOT_FOUND, never 5xx / INTERNAL',
    note='(in-process server, REST and gRPC from a thread while experiments come and go)')
def test_requests_during_folder_changes_get_200_or_404_never_an_internal_error(model_server, trained, tmp_path):
    folder = tmp_path / "lab"
    copy_experiment(trained, folder / "a")
    working = WorkingFolder(folder, poll_seconds=0.05)
    server = model_server(working.update(), poll_seconds=0.05)
    prediction = grpc_stubs(server)[0]
    seen, stop = {"rest": set(), "grpc": set(), "requests": 0}, threading.Event()

    def ask() -> None:
        while not stop.is_set():
            for name in ("a", "b", "c"):
                seen["rest"].add(requests.get(f"{server.rest_url}/v1/models", timeout=10).status_code)
                seen["rest"].add(requests.get(f"{server.rest_url}/v1/models/{name}", timeout=10).status_code)
                seen["rest"].add(requests.post(f"{server.rest_url}/v1/models/{name}:predict",
                                               json={"instances": X.tolist()}, timeout=10).status_code)
                try:
                    prediction.Predict(predict_request(name, {"input": X}), timeout=10)
                    seen["grpc"].add(grpc.StatusCode.OK)
                except grpc.RpcError as error:
                    seen["grpc"].add(error.code())
                seen["requests"] += 1

    asker = threading.Thread(target=ask, daemon=True)
    watcher = working.watch(server.replace_sources, stop)
    asker.start()
    try:
        for names, change in ((["a", "b"], lambda: copy_experiment(trained, folder / "b")),
                              (["a", "b", "c"], lambda: copy_experiment(trained, folder / "c")),
                              (["b", "c"], lambda: shutil.rmtree(folder / "a")),
                              (["c"], lambda: shutil.rmtree(folder / "b"))):
            change()
            wait_for(lambda: sorted(name for name, model in served_models(server.rest_url).items()
                                    if model["state"] == "AVAILABLE") == names, 30, f"{names} served")
        start = seen["requests"]
        wait_for(lambda: seen["requests"] > start, 30, "requests after the last change")
    finally:
        stop.set()
        asker.join(timeout=30)
        watcher.join(timeout=30)
    assert not asker.is_alive() and not watcher.is_alive()
    assert seen["rest"] <= {200, 404} and 200 in seen["rest"] and 404 in seen["rest"], seen
    assert seen["grpc"] <= {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND}, seen


@pytest.mark.slow
@pytest.mark.claim(
    'FOLDER missing, not a folder, or an experiment folder: one line, exit 2',
    note='(also a negative poll period, `--write-models-config` without `--models_dir`)')
@pytest.mark.claim(
    'a models.config at that path that was not generated (hand-written) is never overwritten: one line, exit 2')
@pytest.mark.claim('`--dry-run` without `--tensorflow-model-server`: one line, exit 2, nothing written')
@pytest.mark.claim(
    'the models.config is written once the server listens (a port in use writes none); `--dry-run` prints the '
    'command where the binary is missing')
def test_bad_models_dir_input_is_one_line_exit_2(run_cli, workdir, trained, tmp_path):
    (tmp_path / "a_file").write_text("")
    hand_written = tmp_path / "hand" / "models.config"
    hand_written.parent.mkdir()
    hand_written.write_text("model_config_list {}\n")
    cases = [
        (["--models_dir", str(tmp_path / "missing")], f"error: --models_dir: {tmp_path / 'missing'}: expected a "
                                                      "folder of experiments, got nothing there"),
        (["--models_dir", str(tmp_path / "a_file")], "expected a folder of experiments, got a file"),
        (["--models_dir", str(trained.dir)], f"got an experiment folder (serve it with --model_dir {trained.dir})"),
        (["--models_dir", str(hand_written.parent)], f"--models_dir: {hand_written}: expected a models.config "
                                                     "this command generated (or none), got another file"),
        (["--models_dir", str(tmp_path), "--model_config_file_poll_wait_seconds", "-1"],
         "error: --model_config_file_poll_wait_seconds: expected >= 0, got -1"),
        (["--model_dir", str(trained.dir), "--write-models-config", "x.config"],
         "error: --write-models-config: only with --models_dir FOLDER"),
    ]
    for arguments, message in cases:
        result = run_cli("serve", *arguments, "--grpc-port", "0", "--rest-port", "0", timeout=60)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --"), result.stderr
        assert message in lines[0], (arguments, lines[0])
    empty = tmp_path / "empty"
    empty.mkdir()
    dry = run_cli("serve", "--models_dir", str(empty), "--dry-run", timeout=60)  # refused before anything is written
    assert dry.returncode == 2 and dry.stderr.strip() == \
        "error: --apptainer-image, --dry-run: only with --tensorflow-model-server", dry.stderr
    assert list(empty.iterdir()) == []
    both = run_cli("serve", "--models_dir", str(tmp_path), "--model_dir", str(trained.dir), timeout=60)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    lab = tmp_path / "lab"
    copy_experiment(trained, lab / "curve" / trained.dir.name)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = run_cli("serve", "--models_dir", str(lab), "--grpc-port", "0", "--rest-port",
                        str(busy.getsockname()[1]), timeout=60)
    assert taken.returncode == 2 and "error: --rest-port: cannot listen on" in taken.stderr, taken.stderr
    assert not (lab / "models.config").exists()  # a server that never listened writes no models.config
    dry = run_cli("serve", "--models_dir", str(lab), "--tensorflow-model-server", "--dry-run", timeout=60)
    assert dry.returncode == 0, dry.stderr  # the binary is not needed to print its command (not installed here)
    assert dry.stdout.split()[0].endswith("tensorflow_model_server") and not (lab / "models.config").exists()


@pytest.mark.claim(
    '`--model_config_file_poll_wait_seconds` default 30',
    note="(weak: the flag given to tensorflow_model_server, not the embedded server's period)")
@pytest.mark.claim(
    'the generated models.config is written to FOLDER/models.config (or `--write-models-config`) at start and '
    "whenever the set changes; TF Serving's protos read it",
    note='(`--write-models-config`)')
@pytest.mark.claim(
    '`--tensorflow-model-server` runs the binary on that file with `--model_config_file_poll_wait_seconds`; '
    '`--dry-run` prints the command and the config, writing nothing',
    note='(fake binary records its call)')
def test_tensorflow_model_server_reads_the_folders_models_config_with_the_poll_flag(fake_tools, trained, tmp_path):
    folder = tmp_path / "lab"
    copy_experiment(trained, folder / "curve" / trained.dir.name)
    bin_folder, add = fake_tools
    binary = add("tensorflow_model_server")
    record = tmp_path / "called"
    dry = run_with_path(bin_folder, record, "serve", "--models_dir", str(folder), "--tensorflow-model-server",
                        "--dry-run")
    assert dry.returncode == 0, dry.stderr
    words = dry.stdout.splitlines()[0].split()
    assert words[0] == str(binary)
    assert f"--model_config_file={(folder / 'models.config').resolve()}" in words
    assert "--model_config_file_poll_wait_seconds=30" in words  # the default period
    assert f'name: "curve.{trained.dir.name}"' in dry.stdout
    assert not (folder / "models.config").exists() and not record.exists()  # a dry run writes and runs nothing

    elsewhere = tmp_path / "configs" / "lab.config"
    run = run_with_path(bin_folder, record, "serve", "--models_dir", str(folder), "--tensorflow-model-server",
                        "--write-models-config", str(elsewhere), "--model_config_file_poll_wait_seconds", "5")
    assert run.returncode == 0, run.stderr
    words = record.read_text().split()
    assert words[0] == str(binary) and f"--model_config_file={elsewhere.resolve()}" in words
    assert "--model_config_file_poll_wait_seconds=5" in words
    assert f"models.config of 1 model(s) written to {elsewhere}" in run.stderr
    assert config_models(elsewhere) == config_models(f"{record}.models.config") == {
        f"curve.{trained.dir.name}": str((folder / "curve" / trained.dir.name / "exported_models").resolve())}


@pytest.mark.claim(
    'an experiment is served once it has a version on disk whatever its status, and while it runs; one that ended '
    'without a version is left out',
    note='(finished, failed, interrupted with versions; running without; failed and interrupted without)')
def test_which_experiments_are_served_by_status_and_versions(trained, tmp_path):
    import json

    folder = tmp_path / "lab"

    def run_with(name, status, versions):
        experiment = copy_experiment(trained, folder / name)
        info = json.loads((experiment / "run.json").read_text())
        (experiment / "run.json").write_text(json.dumps({**info, "status": status}))
        if not versions:
            shutil.rmtree(experiment / "exported_models")

    run_with("finished", "finished", True)
    run_with("failed", "failed", True)  # a failed run's versions are whole exports of epochs that ended
    run_with("interrupted", "interrupted", True)
    run_with("running_no_version", "running", False)  # served as its versions appear
    run_with("failed_no_version", "failed", False)  # nothing to serve, and nothing will come
    run_with("interrupted_no_version", "interrupted", False)  # until a resume runs it again
    working = WorkingFolder(folder, poll_seconds=0)
    assert [source.name for source in working.scan()] == ["failed", "finished", "interrupted", "running_no_version"]


SLEEPING_BINARY = """#!/bin/sh
echo "$0 $*" > "$RECORD"
exec sleep 60
"""


@pytest.mark.claim(
    '... while this process keeps the file up to date',
    note='(a stand-in binary that runs until SIGTERM; an experiment added, one removed)')
def test_tensorflow_model_server_reads_the_models_config_this_process_keeps_up_to_date(trained, tmp_path):
    folder = tmp_path / "lab"
    copy_experiment(trained, folder / "first")
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    (bin_folder / "tensorflow_model_server").write_text(SLEEPING_BINARY)
    (bin_folder / "tensorflow_model_server").chmod(0o755)
    record = tmp_path / "called"
    env = dict(cli_env(), PATH=f"{bin_folder}:{cli_env()['PATH']}", RECORD=str(record))
    process = start_forked(["serve", "--models_dir", str(folder), "--tensorflow-model-server",
                            "--model_config_file_poll_wait_seconds", "0.2"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(record.exists, 60, "the binary to start")
        assert f"--model_config_file={(folder / 'models.config').resolve()}" in record.read_text().split()
        assert set(config_models(folder / "models.config")) == {"first"}
        copy_experiment(trained, folder / "second")  # while the binary runs: the file it re-reads follows
        wait_for(lambda: set(config_models(folder / "models.config")) == {"first", "second"}, 10, "second listed")
        shutil.rmtree(folder / "first")
        wait_for(lambda: set(config_models(folder / "models.config")) == {"second"}, 10, "first dropped")
        process.send_signal(signal.SIGTERM)  # forwarded to the binary
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.claim(
    'an experiment whose models.config changed its version policy keeps answering while the new policy applies',
    note='(weak: `VersionManager.replace_sources` with the changed source, in-process)')
def test_a_changed_version_policy_keeps_the_served_versions_while_it_applies(trained, tmp_path):
    import dataclasses

    from experiments_manager.serving.versions import VersionManager

    folder = tmp_path / "lab"
    copy_experiment(trained, folder / "run")
    source = WorkingFolder(folder, poll_seconds=0).scan()[0]
    unloaded = []
    versions = VersionManager([source], poll_seconds=0, on_unload=unloaded.append)
    versions.start()
    try:
        newest = versions.lookup("run")
        assert newest.version == trained.versions[-1]
        # its own models.config edited: the latest 2 from now on (the base path is the same)
        versions.replace_sources([dataclasses.replace(source, num_versions=2)])
        assert versions.lookup("run") is newest and unloaded == []  # never unloaded: no NOT_FOUND in between
        assert versions.served_versions("run") == trained.versions[-2:]
        versions.replace_sources([dataclasses.replace(source, policy="specific", versions=(trained.versions[0],))])
        assert versions.served_versions("run") == [trained.versions[0]]
        assert sorted(servable.version for servable in unloaded) == trained.versions[-2:]
    finally:
        versions.stop()


@pytest.mark.claim(
    'requests while the set changes get an answer or 404 / NOT_FOUND, never 5xx / INTERNAL',
    note='(the two races forced)')
def test_a_lookup_or_model_list_racing_a_swap_or_a_failed_load_is_answered_not_500(tmp_path):
    """The two races of a request with `replace_sources` and the poller, made to happen at the worst moment."""
    from experiments_manager.serving.config import ModelSource
    from experiments_manager.serving.errors import RequestError
    from experiments_manager.serving.versions import END, VersionManager

    versions = VersionManager([ModelSource("m", tmp_path / "m", labels=(("stable", 1),))], poll_seconds=0)

    class SwappedAfterOneRead(dict):  # `replace_sources` drops the model right after a request's first read
        def __contains__(self, name: object) -> bool:
            versions.sources = {}
            return super().__contains__(name)

        def get(self, name, default=None):
            versions.sources = {}
            return super().get(name, default)

    versions.sources = SwappedAfterOneRead(versions.sources)
    with pytest.raises(RequestError) as refused:  # was a KeyError: a 500
        versions.lookup("m", label="stable")
    assert refused.value.code == grpc.StatusCode.NOT_FOUND

    class GrowsWhileRead(dict):  # the poller records a failed load while the model list reads the failures
        def items(self):
            for pair in super().items():
                self[("m", 100 + len(self))] = ((), "failed meanwhile")
                yield pair

    versions = VersionManager([ModelSource("m", tmp_path / "m")], poll_seconds=0)
    versions._failed = GrowsWhileRead({("m", 1): ((), "broken")})
    assert versions.statuses("m") == [(1, END, "broken")]  # was 'dictionary changed size during iteration'
