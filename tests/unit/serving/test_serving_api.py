"""The embedded server answers TF Serving clients: real gRPC stubs and HTTP requests on loopback."""

import concurrent.futures
import json

import grpc
import numpy as np
import pytest
import requests

from experiments_manager.serving.config import ModelSource
from experiments_manager.serving.options import BatchingOptions
from serving_helpers import X, grpc_stubs, predict_request


@pytest.fixture
def server(model_server, base_path, trained):
    return model_server([ModelSource(trained.model_name, base_path)])


@pytest.mark.claim('gRPC Predict answers what the in-process EMA model computes, typed fields (`float_val`) filled')
@pytest.mark.claim('`model_spec`: version; empty signature = `serving_default`; a signature named after the model')
@pytest.mark.claim('REST `:predict` with `instances` (row) or `inputs` (columnar)')
@pytest.mark.claim(
    '`examples/regression` (original style, served module, Client_IO, hyperopt_space) trains, serves, sweeps')
def test_grpc_and_rest_answer_what_the_in_process_ema_model_computes(server, trained):
    expected = trained.model(X, training=False).numpy()
    prediction, _ = grpc_stubs(server)

    answer = prediction.Predict(predict_request(trained.model_name, {"input": X}), timeout=10)
    # TF Serving fills the typed fields; the original framework's clients read float_val
    got = np.array(answer.outputs["prediction"].float_val).reshape(X.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert answer.model_spec.version.value == 1 and answer.model_spec.signature_name == "serving_default"

    by_name = prediction.Predict(predict_request(trained.model_name, {"input": X}, trained.model_name), timeout=10)
    np.testing.assert_allclose(np.array(by_name.outputs["prediction_plus_1"].float_val).reshape(X.shape), expected + 1, rtol=1e-6)

    url = f"{server.rest_url}/v1/models/{trained.model_name}:predict"
    rows = requests.post(url, json={"instances": X.tolist()}, timeout=10).json()["predictions"]
    np.testing.assert_allclose([row["prediction"] for row in rows], expected, rtol=1e-6)
    columns = requests.post(url, json={"inputs": {"input": X.tolist()}}, timeout=10).json()["outputs"]
    np.testing.assert_allclose(columns["prediction_plus_1"], expected + 1, rtol=1e-6)


@pytest.mark.claim("REST `GET /v1/models/NAME[/versions/N][/metadata]` in TF Serving's shapes")
def test_rest_status_and_metadata_have_tf_serving_shapes(server, trained):
    base = f"{server.rest_url}/v1/models/{trained.model_name}"
    assert requests.get(base, timeout=10).json() == {
        "model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    }
    assert requests.get(f"{base}/versions/1", timeout=10).status_code == 200
    metadata = requests.get(f"{base}/metadata", timeout=10).json()
    assert metadata["model_spec"] == {"name": trained.model_name, "signature_name": "", "version": "1"}
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["input"]["dtype"] == "DT_FLOAT"
    assert set(signature["outputs"]) == {"prediction", "prediction_plus_1"}
    assert requests.get(f"{base}/versions/1/metadata", timeout=10).json() == metadata


@pytest.mark.claim('gRPC GetModelMetadata and ModelService/GetModelStatus')
def test_grpc_metadata_and_status(server, trained):
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    prediction, models = grpc_stubs(server)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = trained.model_name
    answer = prediction.GetModelMetadata(request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    answer.metadata["signature_def"].Unpack(signatures)
    assert {"serving_default", trained.model_name} <= set(signatures.signature_def)

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = trained.model_name
    statuses = models.GetModelStatus(status_request, timeout=10).model_version_status
    assert [(status.version, status.state) for status in statuses] == [(1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        (":predict", b"{not json", 400, "malformed JSON"),
        (":predict", b"[1, 2]", 400, "JSON object"),
        (":predict", json.dumps({"instances": [[1.0]], "inputs": [[1.0]]}).encode(), 400, "exactly one of"),
        (":predict", json.dumps({"instances": [{"wrong": [1.0]}]}).encode(), 400, "unknown ['wrong']"),
        (":predict", json.dumps({"instances": [[1.0, 2.0]]}).encode(), 400, "expected shape [-1, 1]"),
        (":predict", json.dumps({"instances": [["a"]]}).encode(), 400, "expected float32 values, got strings"),
        (":predict", json.dumps({"instances": [[1.0], [1.0, 2.0]]}).encode(), 400, "ragged"),
        (":predict", json.dumps({"instances": []}).encode(), 400, "non-empty list"),
        (":predict", json.dumps({"signature_name": "nope", "instances": [[1.0]]}).encode(), 400, "'nope' not found"),
        ("/versions/99:predict", json.dumps({"instances": [[1.0]]}).encode(), 404, "Specific(model_curve_fitting, 99)"),
        ("/versions/x:predict", json.dumps({"instances": [[1.0]]}).encode(), 400, "expected a version number"),
        (":classify", json.dumps({"examples": []}).encode(), 400, "only :predict"),
    ],
)
@pytest.mark.claim('REST errors `{"error": ...}` with 400, 404, 405, 413')
def test_rest_bad_requests_get_a_4xx_with_a_message(server, trained, path, body, status, message):
    answer = requests.post(f"{server.rest_url}/v1/models/{trained.model_name}{path}", data=body, timeout=10)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    still = requests.post(f"{server.rest_url}/v1/models/{trained.model_name}:predict", json={"instances": [[1.0]]}, timeout=10)
    assert still.status_code == 200


@pytest.mark.claim('REST errors `{"error": ...}` with 400, 404, 405, 413')
def test_rest_refuses_unknown_models_path_tricks_methods_and_big_bodies(model_server, base_path, trained):
    server = model_server([ModelSource(trained.model_name, base_path)], max_request_bytes=1000)
    root = f"{server.rest_url}/v1/models"
    unknown = requests.post(f"{root}/nobody:predict", json={"instances": [[1.0]]}, timeout=10)
    assert unknown.status_code == 404 and "Latest(nobody)" in unknown.json()["error"]
    for name in ("..%2F..%2Fetc", "a%2Fb", ".."):
        tricky = requests.post(f"{root}/{name}:predict", json={"instances": [[1.0]]}, timeout=10)
        assert tricky.status_code == 400 and "without '/' or '..'" in tricky.json()["error"], name
    assert requests.get(f"{root}/{trained.model_name}:predict", timeout=10).status_code == 405
    assert requests.get(f"{server.rest_url}/v2/anything", timeout=10).status_code == 404
    big = requests.post(f"{root}/{trained.model_name}:predict", json={"instances": [[0.5]] * 200}, timeout=10)
    assert big.status_code == 413 and "--max-request-bytes" in big.json()["error"]
    assert requests.post(f"{root}/{trained.model_name}:predict", json={"instances": [[1.0]]}, timeout=10).status_code == 200


@pytest.mark.claim('`model_spec`: version; empty signature = `serving_default`; a signature named after the model')
@pytest.mark.claim(
    'client mistakes: REST 4xx, gRPC INVALID_ARGUMENT / NOT_FOUND / RESOURCE_EXHAUSTED, never 5xx / INTERNAL')
def test_grpc_bad_requests_get_the_matching_status(model_server, base_path, trained):
    server = model_server([ModelSource(trained.model_name, base_path)], max_request_bytes=4096)
    prediction, _ = grpc_stubs(server)
    cases = [
        (predict_request(trained.model_name, {"input": X.astype(np.float64)}), grpc.StatusCode.INVALID_ARGUMENT, "expected dtype float32"),
        (predict_request(trained.model_name, {"wrong": X}), grpc.StatusCode.INVALID_ARGUMENT, "unknown ['wrong']"),
        (predict_request(trained.model_name, {"input": np.zeros((2, 3), np.float32)}), grpc.StatusCode.INVALID_ARGUMENT, "expected shape"),
        (predict_request(trained.model_name, {"input": X}, "nope"), grpc.StatusCode.INVALID_ARGUMENT, "'nope' not found"),
        (predict_request("nobody", {"input": X}), grpc.StatusCode.NOT_FOUND, "Latest(nobody)"),
        (predict_request(trained.model_name, {"input": X}, version=7), grpc.StatusCode.NOT_FOUND, "Specific"),
        (predict_request("../etc", {"input": X}), grpc.StatusCode.INVALID_ARGUMENT, "without '/' or '..'"),
        (predict_request(trained.model_name, {"input": np.zeros((5000, 1), np.float32)}), grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    ]
    for request, code, message in cases:
        with pytest.raises(grpc.RpcError) as refused:
            prediction.Predict(request, timeout=10)
        assert refused.value.code() == code and message in refused.value.details(), refused.value.details()
    assert prediction.Predict(predict_request(trained.model_name, {"input": X}), timeout=10).outputs["prediction"].float_val


@pytest.mark.claim('`--enable_batching` merges concurrent requests into one model call')
def test_batching_answers_concurrent_clients_like_single_calls(model_server, base_path, trained):
    server = model_server([ModelSource(trained.model_name, base_path)], batching=BatchingOptions(16, 5000))
    url = f"{server.rest_url}/v1/models/{trained.model_name}:predict"
    inputs = [np.array([[value]], np.float32) for value in np.linspace(-2, 2, 48)]
    prediction, _ = grpc_stubs(server)

    def ask(index):
        if index % 2:
            return requests.post(url, json={"instances": inputs[index].tolist()}, timeout=10).json()["predictions"][0]["prediction"]
        answer = prediction.Predict(predict_request(trained.model_name, {"input": inputs[index]}), timeout=10)
        return list(answer.outputs["prediction"].float_val)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(len(inputs))))
    expected = trained.model(np.concatenate(inputs), training=False).numpy()
    np.testing.assert_allclose(np.array(answers), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.claim(
    'a REST body over 1 MiB has its arrays of numbers decoded straight to arrays (its answer sent in pieces), '
    'with the answers and errors of a small body')
def test_big_bodies_decoded_as_numbers_give_the_answers_and_errors_of_small_ones(server, trained):
    """Bodies over 1 MiB keep their arrays of numbers as text, decoded window by window into the signature's dtype
    (serving/json_numbers.py), and answers are sent in pieces: the answers must be those of the in-process model,
    and the errors those of the same mistake in a small body, or say what is wrong in the big array."""
    from experiments_manager.serving import json_numbers

    seed = 20261122
    print(f"seed {seed}")
    x = np.random.default_rng(seed).uniform(-2, 2, (60_000, 1)).astype(np.float32)
    expected = trained.model(x, training=False).numpy()
    url = f"{server.rest_url}/v1/models/{trained.model_name}:predict"
    bodies = {"rows": {"instances": x.tolist()}, "named rows": {"instances": [{"input": row} for row in x.tolist()]},
              "columns": {"inputs": {"input": x.tolist()}}, "one column": {"inputs": x.tolist()}}
    for kind, body in bodies.items():
        data = json.dumps(body).encode()
        assert len(data) > json_numbers.BIG_BODY_BYTES
        answer = requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=60)
        assert answer.status_code == 200, (kind, answer.text[:300])
        if "column" in kind:
            np.testing.assert_allclose(answer.json()["outputs"]["prediction"], expected, rtol=1e-5, err_msg=kind)
        else:
            np.testing.assert_allclose([row["prediction"] for row in answer.json()["predictions"]], expected,
                                       rtol=1e-5, err_msg=kind)

    def error(body, padding):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        data = data[:-1] + b" " * padding + data[-1:]  # the same request, made big with blanks
        answer = requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=60)
        return answer.status_code, answer.json()["error"]

    big = json_numbers.BIG_BODY_BYTES + 1
    for body in ({"instances": [[1.0], [2.0, 3.0]]}, {"instances": [["a"], ["b"]]}, {"inputs": {"nope": [[1.0]]}},
                 {"instances": [{"input": [1.0]}, {"other": [1.0]}]}, {"instances": []}, b'{"instances": [[1.0],]}'):
        small = error(body, 0)
        assert small[0] == 400 and error(body, big) == small, body
    rows = json.dumps({"instances": x.tolist()})
    mistakes = {  # a big array of numbers with one mistake in it, and what the answer must say
        "ragged": (rows.replace("]]", "], [1.0, 2.0]]"), "expected a rectangular nested list"),
        "a number JSON refuses": (rows.replace("]]", "], [.5]]"), "an invalid number"),
        "a comma missing": (rows.replace("], [", "] [", 1), "missing comma"),
        "a string among the numbers": (rows.replace("]]", '], ["a"]]'), "expected float32 values, got strings"),
    }
    for kind, (data, message) in mistakes.items():
        answer = requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=60)
        assert answer.status_code == 400 and message in answer.json()["error"], (kind, answer.text[:300])
    integers = requests.post(url, json={"instances": [[1]] * 300_000}, timeout=60)  # integers for a float input
    assert integers.status_code == 200 and len(integers.json()["predictions"]) == 300_000
