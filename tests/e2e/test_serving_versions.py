"""Versions appear, change and go while the server runs: hot loading, policies, partial folders."""

import os
import re
import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

from conftest import free_port, publish_version, start_forked, wait_for
from serving_helpers import predict_request
from experiments_manager.serving.config import ModelSource, source_from_experiment, sources_from_config_file


def grpc_version(server, name):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    request = predict_request(name, {"input": np.array([[0.5]], np.float32)})
    with grpc.insecure_channel(server.grpc_address) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10).model_spec.version.value


@pytest.mark.claim(
    'base paths polled every `--file_system_poll_wait_seconds`; a new version answers soon after its rename',
    note='(in-process, poll 1 s)')
@pytest.mark.claim('an experiment uses its own models.config, latest 1')
def test_a_new_version_answers_within_two_seconds_of_its_rename(model_server, base_path, trained):
    server = model_server([ModelSource(trained.model_name, base_path)], poll_seconds=1.0)
    assert grpc_version(server, trained.model_name) == 1
    renamed_at = publish_version(base_path, 2, base_path / "1")
    wait_for(lambda: grpc_version(server, trained.model_name) == 2, 5, "version 2 to answer")
    assert time.monotonic() - renamed_at <= 2.0
    # latest 1: the old version is unloaded once the new one answers
    wait_for(lambda: server.versions.served_versions(trained.model_name) == [2], 5, "version 1 to be unloaded")


@pytest.mark.claim('dot-prefixed folders and folders without `saved_model.pb` are never loaded')
@pytest.mark.claim('a version that fails to load: the previous one keeps answering')
def test_partial_and_broken_versions_are_never_served(model_server, base_path, trained):
    server = model_server([ModelSource(trained.model_name, base_path)])
    (base_path / ".tmp-5").mkdir()
    shutil.copytree(base_path / "1" / "variables", base_path / ".tmp-5" / "variables")
    (base_path / "3").mkdir()  # being copied in: no saved_model.pb yet
    shutil.copytree(base_path / "1" / "variables", base_path / "3" / "variables")
    shutil.copytree(base_path / "1", base_path / "4")
    (base_path / "4" / "saved_model.pb").write_bytes(b"not a SavedModel")
    wait_for(lambda: any(s[0] == 4 for s in server.versions.statuses(trained.model_name)), 10, "version 4 to be tried")

    assert grpc_version(server, trained.model_name) == 1
    statuses = {version: (state, message) for version, state, message in server.versions.statuses(trained.model_name)}
    assert statuses[1] == ("AVAILABLE", "") and statuses[4][0] == "END" and statuses[4][1]
    assert 3 not in statuses and 5 not in statuses

    shutil.copyfile(base_path / "1" / "saved_model.pb", base_path / "3" / "saved_model.pb")  # copy completes
    wait_for(lambda: grpc_version(server, trained.model_name) == 3, 10, "the completed version 3")
    shutil.copyfile(base_path / "1" / "saved_model.pb", base_path / "4" / "saved_model.pb")  # fixed: tried again
    wait_for(lambda: grpc_version(server, trained.model_name) == 4, 10, "the repaired version 4")


def write_config(path, body):
    path.write_text(body)
    return path


@pytest.mark.claim('`serve --model_config_file models.config`')
@pytest.mark.claim('REST `/labels/L` (status and `:predict`)')
@pytest.mark.claim('older versions unloaded by policy: `latest N`, `all`, `specific`')
def test_version_policies_and_labels_from_a_models_config(model_server, tmp_path, trained):
    exported = trained.dir / "exported_models"
    bases = {}
    for name in ("latest2", "every", "pinned"):
        bases[name] = tmp_path / name
        for version in trained.versions:
            shutil.copytree(exported / str(version), bases[name] / str(version))
    config = write_config(tmp_path / "models.config", f"""
model_config_list {{
  config {{ name: "latest2" base_path: "{bases['latest2']}" model_platform: "tensorflow"
           model_version_policy {{ latest {{ num_versions: 2 }} }} }}
  config {{ name: "every" base_path: "every" model_platform: "tensorflow" model_version_policy {{ all {{}} }} }}
  config {{ name: "pinned" base_path: "{bases['pinned']}" model_platform: "tensorflow"
           model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
           version_labels {{ key: "stable" value: 1 }} }}
}}""")
    server = model_server(sources_from_config_file(config))
    newest = trained.versions[-1]
    assert server.versions.served_versions("latest2") == trained.versions[-2:]
    assert server.versions.served_versions("every") == trained.versions
    assert server.versions.served_versions("pinned") == [1, 2]

    import requests

    stable = requests.post(f"{server.rest_url}/v1/models/pinned/labels/stable:predict", json={"instances": [[0.5]]}, timeout=10)
    assert stable.status_code == 200
    assert requests.get(f"{server.rest_url}/v1/models/pinned/labels/stable", timeout=10).json()["model_version_status"][0]["version"] == "1"

    publish_version(bases["latest2"], newest + 1, bases["latest2"] / str(newest))
    publish_version(bases["pinned"], newest + 1, bases["pinned"] / str(newest))
    shutil.rmtree(bases["every"] / "1")
    wait_for(lambda: server.versions.served_versions("latest2") == [newest, newest + 1], 10, "latest 2 to move on")
    wait_for(lambda: 1 not in server.versions.served_versions("every"), 10, "a deleted version to be unloaded")
    assert server.versions.served_versions("pinned") == [1, 2]


@pytest.mark.parametrize(
    "body, message",
    [
        ("model_config_list { config { name: 'a' } }", "base_path"),
        ("model_config_list { config { name: '../a' base_path: '/x' } }", "name: expected a model name"),
        ("model_config_list { config { name: 'a' base_path: '/x' model_platform: 'onnx' } }", "model_platform"),
        ("not a config", "expected a ModelServerConfig text proto"),
        ("", "at least one config"),
    ],
)
@pytest.mark.claim('a bad models.config is refused naming the field')
def test_bad_model_configs_are_refused_with_the_field(tmp_path, body, message):
    from experiments_manager.utils.errors import UserInputError

    with pytest.raises(UserInputError) as refused:
        sources_from_config_file(write_config(tmp_path / "models.config", body))
    assert message in str(refused.value) and "models.config" in str(refused.value)


def counted_polls(versions):
    """Counts the polls `versions` completes from now on (its poller looks `poll_once` up on the instance)."""
    done = [0]
    poll = versions.poll_once

    def counting():
        poll()
        done[0] += 1

    versions.poll_once = counting
    return lambda: done[0]


def wait_for_polls(polls, count, what):
    """Waits until `count` more polls have completed: at least `count - 1` of them began after this call."""
    seen = polls()
    wait_for(lambda: polls() >= seen + count, 10, what)


def publish_broken(base, version, source, broken_file):
    """Publishes a copy of `source` as `version` (hidden, then renamed) with `broken_file` overwritten by junk."""
    hidden = base / f".tmp-{version}"
    shutil.copytree(source, hidden)
    (hidden / broken_file).write_bytes(b"junk, not what TensorFlow wrote")
    os.replace(hidden, base / str(version))


def status_of(server, name, version):
    return {number: state for number, state, _ in server.versions.statuses(name)}.get(version)


@pytest.mark.claim('a served version stays served while its folder exists (saved_model.pb briefly absent)')
def test_a_served_version_stays_served_while_its_saved_model_pb_is_briefly_absent(model_server, base_path, trained):
    publish_version(base_path, 2, base_path / "1")
    server = model_server([ModelSource(trained.model_name, base_path)])
    served = server.versions.lookup(trained.model_name)
    assert served.version == 2
    polls = counted_polls(server.versions)
    saved_model = base_path / "2" / "saved_model.pb"
    aside = base_path / "2" / ".saved_model.pb.aside"
    os.replace(saved_model, aside)  # the folder stays; its saved_model.pb is gone for a while
    wait_for_polls(polls, 3, "polls of a base path where version 2 lacks saved_model.pb")
    assert server.versions.served_versions(trained.model_name) == [2]  # no roll back to version 1
    assert grpc_version(server, trained.model_name) == 2
    os.replace(aside, saved_model)
    wait_for_polls(polls, 3, "polls once saved_model.pb is back")
    assert server.versions.lookup(trained.model_name) is served and not served.retired  # never unloaded, nor reloaded


@pytest.mark.claim('a failed version is retried when any of its files changes')
def test_a_failed_version_repaired_in_place_is_retried_when_any_of_its_files_changes(model_server, base_path, trained):
    server = model_server([ModelSource(trained.model_name, base_path)])
    index = "variables/variables.index"
    publish_broken(base_path, 2, base_path / "1", index)  # saved_model.pb intact, the variables not
    wait_for(lambda: status_of(server, trained.model_name, 2) == "END", 10, "version 2 to fail")
    assert grpc_version(server, trained.model_name) == 1
    shutil.copyfile(base_path / "1" / index, base_path / "2" / index)  # repaired: saved_model.pb untouched
    wait_for(lambda: grpc_version(server, trained.model_name) == 2, 10, "the repaired version 2 to answer")
    assert status_of(server, trained.model_name, 2) == "AVAILABLE"


@pytest.mark.claim('at start-up the newest loadable version answers the first request')
def test_at_start_up_the_newest_loadable_version_answers_the_first_request(model_server, base_path, trained):
    publish_version(base_path, 2, base_path / "1")
    publish_broken(base_path, 3, base_path / "1", "saved_model.pb")
    publish_broken(base_path, 4, base_path / "1", "variables/variables.index")
    # no poll after start(): whatever answers was loaded before start() returned
    server = model_server([ModelSource(trained.model_name, base_path)], poll_seconds=600)
    assert grpc_version(server, trained.model_name) == 2
    statuses = {version: state for version, state, _ in server.versions.statuses(trained.model_name)}
    assert statuses == {4: "END", 3: "END", 2: "AVAILABLE"}


def damaged_copy(trained, folder):
    """A copy of the trained experiment (exports, models.config, settings and model copies) with run.json cut in
    the middle of its text."""
    experiment = folder / trained.dir.name
    shutil.copytree(trained.dir, experiment, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    run_file = experiment / "run.json"
    text = run_file.read_bytes()
    run_file.write_bytes(text[: len(text) // 2])
    return experiment


@pytest.mark.parametrize("removed, named_by", [
    ((), "models.config"),
    (("models.config",), "model_curve_fitting.py"),
    (("models.config", "model_curve_fitting.py"), "saved_model.pb"),
])
@pytest.mark.claim(
    'a damaged run.json does not stop `serve`: one warning, the model named from the folder',
    note='(3 sources)')
def test_a_damaged_run_json_names_the_model_from_the_folder(tmp_path, trained, caplog, removed, named_by):
    experiment = damaged_copy(trained, tmp_path)
    for name in removed:
        (experiment / name).unlink()
    with caplog.at_level("WARNING", logger="experiments_manager"):
        source = source_from_experiment(experiment)
    assert (source.name, source.base_path, source.policy) == (trained.model_name, experiment / "exported_models", "latest")
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and str(experiment / "run.json") in warnings[0] and named_by in warnings[0], warnings


@pytest.mark.slow
@pytest.mark.claim('a damaged run.json does not stop `serve`: one warning, the model named from the folder')
def test_serve_of_an_experiment_with_a_damaged_run_json_serves_its_intact_versions(tmp_path, trained):
    import requests

    experiment = damaged_copy(trained, tmp_path)
    settings_copy = experiment / "experiment_settings.py"
    port = free_port()  # the default gRPC port: the settings copy's literal one, run.json being unreadable
    settings_copy.write_text(re.sub(r"(?m)^tensorflow_server_port = \d+$", f"tensorflow_server_port = {port}",
                                    settings_copy.read_text()))
    process = start_forked(["serve", "--model_dir", str(experiment), "--rest-port", "0"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    try:
        def rest_url():
            found = [re.search(r"REST: (http://\S+)/v1/models/model_curve_fitting$", line.rstrip()) for line in lines]
            assert process.poll() is None, "serve exited:\n" + "".join(lines)
            return next((match[1] for match in found if match), None)

        rest = wait_for(rest_url, 120, "serve to print its REST address")
        answer = requests.post(f"{rest}/v1/models/{trained.model_name}:predict", json={"instances": [[0.5]]}, timeout=10)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1
        assert f"gRPC: 127.0.0.1:{port}  " in "".join(lines)
        mentions = [line for line in lines if "run.json" in line]
        assert len(mentions) == 1 and str(experiment / "run.json") in mentions[0], lines
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.claim('a damaged version is set aside at a resume and never served')
def test_a_version_damaged_in_place_is_not_served(model_server, base_path, trained):
    """Bytes of its variables overwritten, the size unchanged: only its checksums tell; the server refuses it and
    the version before answers."""
    assert (base_path / "1" / "checksums.sha256").is_file()
    hidden = base_path / ".tmp-2"
    shutil.copytree(base_path / "1", hidden)
    data = next((hidden / "variables").glob("variables.data-*"))
    content = bytearray(data.read_bytes())
    content[:16] = bytes(byte ^ 0xFF for byte in content[:16])
    data.write_bytes(bytes(content))
    os.replace(hidden, base_path / "2")
    server = model_server([ModelSource(trained.model_name, base_path)])
    statuses = {version: (state, message) for version, state, message in server.versions.statuses(trained.model_name)}
    assert statuses[2][0] == "END" and "differs from what was written" in statuses[2][1], statuses
    assert grpc_version(server, trained.model_name) == 1
