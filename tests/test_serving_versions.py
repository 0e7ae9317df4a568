"""Versions appear, change and go while the server runs: hot loading, policies, partial folders."""

import shutil
import time

import numpy as np
import pytest

from conftest import publish_version, wait_for
from experiments_manager.serving.config import ModelSource, sources_from_config_file


def grpc_version(server, name):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["input"].CopyFrom(tf.make_tensor_proto(np.array([[0.5]], np.float32)))
    with grpc.insecure_channel(server.grpc_address) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10).model_spec.version.value


def test_a_new_version_answers_within_two_seconds_of_its_rename(model_server, base_path, trained):
    server = model_server([ModelSource(trained.model_name, base_path)], poll_seconds=1.0)
    assert grpc_version(server, trained.model_name) == 1
    renamed_at = publish_version(base_path, 2, base_path / "1")
    wait_for(lambda: grpc_version(server, trained.model_name) == 2, 5, "version 2 to answer")
    assert time.monotonic() - renamed_at <= 2.0
    # latest 1: the old version is unloaded once the new one answers
    wait_for(lambda: server.versions.served_versions(trained.model_name) == [2], 5, "version 1 to be unloaded")


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
def test_bad_model_configs_are_refused_with_the_field(tmp_path, body, message):
    from experiments_manager.utils.errors import UserInputError

    with pytest.raises(UserInputError) as refused:
        sources_from_config_file(write_config(tmp_path / "models.config", body))
    assert message in str(refused.value) and "models.config" in str(refused.value)
