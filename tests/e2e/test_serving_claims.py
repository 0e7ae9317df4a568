"""Serving claims of the docs (docs/how-to/serving.md) not covered elsewhere, tried with real clients against real
servers: version labels over gRPC, `{"b64": ...}` bytes, NaN / Infinity over REST, a failed version in
GetModelStatus, `serve` with a models.config, its request size limit and Ctrl-C, and `predict`'s settings address,
`--interval`, `--wait-for-server` and Ctrl-C."""

import base64
import json
import os
import re
import shutil
import signal
import threading

import grpc
import numpy as np
import pytest
import requests

from conftest import publish_version, wait_for
from experiments_manager.serving.config import ModelSource
from serving_helpers import X, grpc_stubs, predict_request
from test_serving_cli import client_variant


class Output:
    """Every output line of a background CLI process; `wait_for` a line matching a pattern."""

    def __init__(self, process):
        self.process = process
        self.lines = []
        self.closed = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
        self.closed.set()

    def wait_for(self, pattern, timeout):
        def found():
            for line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            assert not self.closed.is_set(), "the output ended first:\n" + self.text()
            return None

        try:
            return wait_for(found, timeout, f"a line matching {pattern!r}")
        except AssertionError as error:
            raise AssertionError(f"{error}; output:\n{self.text()}") from None

    def text(self):
        return "\n".join(self.lines)

    def finished(self, timeout):
        """Waits for the process to exit and its output to be read whole; returns the exit code."""
        code = self.process.wait(timeout=timeout)
        wait_for(self.closed.is_set, 10, "the end of the process' output")
        return code


def computed_by(version_dir, x=X):
    """What a version folder computes for `x`, loaded in this process (the reference for served answers)."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return signature(input=tf.constant(x))["prediction"].numpy()


def copy_versions(base, trained, numbering):
    """Fills a base path: {new version number: index in trained.versions}."""
    for version, index in numbering.items():
        shutil.copytree(trained.dir / "exported_models" / str(trained.versions[index]), base / str(version))
    return base


@pytest.mark.claim('`model_spec` version label over gRPC')
def test_grpc_version_label_answers_the_labelled_version_like_rest_labels(model_server, tmp_path, trained):
    from tensorflow_serving.apis import get_model_metadata_pb2

    base = copy_versions(tmp_path / "labelled", trained, {1: 0, 2: -1})
    expected = {version: computed_by(base / str(version)) for version in (1, 2)}
    assert not np.allclose(expected[1], expected[2])  # else a wrong version could not be told apart
    server = model_server([ModelSource("labelled", base, policy="all", labels=(("canary", 2), ("stable", 1)))])
    prediction, _ = grpc_stubs(server)
    rest = f"{server.rest_url}/v1/models/labelled"

    for label, version in (("stable", 1), ("canary", 2)):
        request = predict_request("labelled", {"input": X})
        request.model_spec.version_label = label
        answer = prediction.Predict(request, timeout=10)
        assert answer.model_spec.version.value == version, label
        got = np.array(answer.outputs["prediction"].float_val).reshape(X.shape)
        np.testing.assert_allclose(got, expected[version], rtol=1e-6)
        rows = requests.post(f"{rest}/labels/{label}:predict", json={"instances": X.tolist()}, timeout=10)
        rows = rows.json()["predictions"]
        np.testing.assert_allclose([row["prediction"] for row in rows], expected[version], rtol=1e-6)
        status = requests.get(f"{rest}/labels/{label}", timeout=10).json()["model_version_status"]
        assert [row["version"] for row in status] == [str(version)]

    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata_request.model_spec.name = "labelled"
    metadata_request.model_spec.version_label = "stable"
    assert prediction.GetModelMetadata(metadata_request, timeout=10).model_spec.version.value == 1

    # TF Serving: "Unrecognized servable version label: L", INVALID_ARGUMENT (REST 400)
    unknown = predict_request("labelled", {"input": X})
    unknown.model_spec.version_label = "nope"
    with pytest.raises(grpc.RpcError) as refused:
        prediction.Predict(unknown, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Unrecognized servable version label: nope" in refused.value.details()
    answer = requests.post(f"{rest}/labels/nope:predict", json={"instances": [[0.5]]}, timeout=10)
    assert answer.status_code == 400 and "Unrecognized servable version label: nope" in answer.json()["error"]


def save_string_model(folder):
    """A SavedModel of one DT_STRING input `text`: its byte lengths, and the bytes echoed back as `echo_bytes`."""
    import tensorflow as tf

    class Strings(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            return {"length": tf.strings.length(text), "echo_bytes": text}

    module = Strings()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return tf.saved_model.load(str(folder)).signatures["serving_default"]


@pytest.mark.claim('REST `{"b64": ...}` for bytes')
def test_rest_b64_inputs_reach_a_string_model_and_bytes_outputs_come_back_as_b64(model_server, tmp_path):
    import tensorflow as tf

    in_process = save_string_model(tmp_path / "strings" / "1")
    server = model_server([ModelSource("strings", tmp_path / "strings")])
    texts = [b"\xff\x00binary", "héllo".encode(), b"plain"]  # not UTF-8, UTF-8, ASCII
    sent = [{"b64": base64.b64encode(texts[0]).decode()}, {"b64": base64.b64encode(texts[1]).decode()}, "plain"]
    expected = in_process(text=tf.constant(texts))
    lengths = expected["length"].numpy().tolist()
    assert lengths == [8, 6, 5] and expected["echo_bytes"].numpy().tolist() == texts
    echoed = [{"b64": base64.b64encode(text).decode()} for text in texts]  # outputs named *_bytes, as TF Serving
    url = f"{server.rest_url}/v1/models/strings:predict"

    rows = requests.post(url, json={"instances": sent}, timeout=10)
    assert rows.status_code == 200, rows.text
    assert rows.json() == {"predictions": [{"length": n, "echo_bytes": e} for n, e in zip(lengths, echoed)]}
    columns = requests.post(url, json={"inputs": {"text": sent}}, timeout=10)
    assert columns.json() == {"outputs": {"length": lengths, "echo_bytes": echoed}}

    bad = requests.post(url, json={"instances": [{"b64": "not base64!"}]}, timeout=10)
    assert bad.status_code == 400 and "invalid base64" in bad.json()["error"]


def save_doubling_model(folder):
    """A SavedModel computing y = 2 x (non-finite values stay what they are)."""
    import tensorflow as tf

    class Doubling(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
        def serve(self, x):
            return {"y": 2 * x}

    module = Doubling()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})


@pytest.mark.claim(
    'versions are int64s in ASCII digits; JSON nested too deep and undecodable gRPC bytes refused; NaN read as TF '
    'Serving does',
    note='(NaN, Infinity read and written)')
def test_rest_nan_and_infinity_are_read_and_written_as_tf_serving_literals(model_server, base_path, trained, tmp_path):
    save_doubling_model(tmp_path / "doubling" / "1")
    server = model_server([ModelSource(trained.model_name, base_path), ModelSource("doubling", tmp_path / "doubling")])
    body = b'{"instances": [[NaN], [Infinity], [-Infinity], [0.5]]}'  # TF Serving's reader takes these literals

    doubled = requests.post(f"{server.rest_url}/v1/models/doubling:predict", data=body, timeout=10)
    assert doubled.status_code == 200, doubled.text
    # written as TF Serving writes them: the bare literals NaN, Infinity, -Infinity (not null, not strings)
    assert re.sub(r"\s", "", doubled.text) == '{"predictions":[[NaN],[Infinity],[-Infinity],[1.0]]}'

    answer = requests.post(f"{server.rest_url}/v1/models/{trained.model_name}:predict", data=body, timeout=10)
    assert answer.status_code == 200, answer.text
    # what the same version computes in this process (a graph: on CPUs where oneDNN fuses MatMul + Relu, relu(NaN)
    # may be 0 there while the eager Keras model gives NaN)
    import tensorflow as tf

    inputs = tf.constant([[np.nan], [np.inf], [-np.inf], [0.5]], tf.float32)
    expected = tf.saved_model.load(str(base_path / "1")).signatures["serving_default"](input=inputs)["prediction"]
    expected = expected.numpy()
    if np.isnan(expected[0, 0]):
        assert re.search(r'"prediction": \[NaN\]', answer.text), answer.text
    got = np.array([row["prediction"] for row in json.loads(answer.text)["predictions"]], np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)


@pytest.mark.claim('... and it is reported by GetModelStatus')
def test_a_version_failing_to_load_is_reported_by_grpc_and_rest_status_while_the_previous_answers(
        model_server, base_path, trained):
    from tensorflow_serving.apis import get_model_status_pb2

    server = model_server([ModelSource(trained.model_name, base_path)])
    hidden = base_path / ".tmp-2"  # published as the exporter does: written under a dot name, then renamed
    shutil.copytree(base_path / "1", hidden)
    (hidden / "saved_model.pb").write_bytes(b"not a SavedModel")
    os.replace(hidden, base_path / "2")
    _, models = grpc_stubs(server)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = trained.model_name

    def grpc_statuses():
        return {s.version: (s.state, s.status.error_code, s.status.error_message)
                for s in models.GetModelStatus(request, timeout=10).model_version_status}

    statuses = wait_for(lambda: (lambda rows: 2 in rows and rows)(grpc_statuses()), 10, "version 2 to be tried")
    states = get_model_status_pb2.ModelVersionStatus
    assert statuses[1] == (states.AVAILABLE, 0, "")
    state, code, message = statuses[2]
    assert state == states.END and code == 2 and message  # tensorflow.error.UNKNOWN, with the load error
    print("load error reported:", message)

    rest = f"{server.rest_url}/v1/models/{trained.model_name}"
    assert requests.get(rest, timeout=10).json() == {"model_version_status": [
        {"version": "2", "state": "END", "status": {"error_code": "UNKNOWN", "error_message": message}},
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
    ]}
    assert requests.get(f"{rest}/versions/2", timeout=10).json()["model_version_status"][0]["state"] == "END"
    request.model_spec.version.value = 2
    assert [s.state for s in models.GetModelStatus(request, timeout=10).model_version_status] == [states.END]

    prediction, _ = grpc_stubs(server)
    answer = prediction.Predict(predict_request(trained.model_name, {"input": X}), timeout=10)
    assert answer.model_spec.version.value == 1
    assert requests.post(f"{rest}:predict", json={"instances": [[0.5]]}, timeout=10).status_code == 200


@pytest.mark.slow
@pytest.mark.claim('`serve --model_config_file models.config`')
@pytest.mark.claim('`model_spec` version label over gRPC')
@pytest.mark.claim('`--max-request-bytes` (64 MiB)', note='(CLI flag, REST 413 and gRPC RESOURCE_EXHAUSTED)')
@pytest.mark.claim('Ctrl-C stops the server cleanly')
def test_serve_cli_serves_a_models_config_caps_request_bytes_and_stops_cleanly_on_ctrl_c(start_cli, tmp_path, trained):
    curve = copy_versions(tmp_path / "curve", trained, {1: 0, 2: -1})
    pinned = copy_versions(tmp_path / "pinned", trained, {1: 0, 2: -1})
    config = tmp_path / "models.config"
    config.write_text(f"""model_config_list {{
  config {{ name: "curve" base_path: "{curve}" model_platform: "tensorflow" }}
  config {{ name: "pinned" base_path: "{pinned}" model_platform: "tensorflow"
           model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
           version_labels {{ key: "stable" value: 1 }} }}
}}""")
    process = start_cli("serve", "--model_config_file", str(config), "--grpc-port", "0", "--rest-port", "0",
                        "--max-request-bytes", "4096", warm=True)
    output = Output(process)
    output.wait_for(r"Ctrl-C or SIGTERM stops the server", 90)  # after the addresses of every model served
    rest = output.wait_for(r"REST: (http://127\.0\.0\.1:\d+)/v1/models/curve", 1)[1]
    assert f"REST: {rest}/v1/models/pinned" in output.text()
    grpc_address = output.wait_for(r"gRPC: (127\.0\.0\.1:\d+)", 1)[1]

    for name, versions in (("curve", [2]), ("pinned", [2, 1])):  # latest 1; specific [1, 2]
        answer = requests.post(f"{rest}/v1/models/{name}:predict", json={"instances": X.tolist()}, timeout=10)
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose([row["prediction"] for row in answer.json()["predictions"]],
                                   computed_by(tmp_path / name / str(versions[0])), rtol=1e-6)
        status = requests.get(f"{rest}/v1/models/{name}", timeout=10).json()["model_version_status"]
        assert [(row["version"], row["state"]) for row in status] == [(str(v), "AVAILABLE") for v in versions]
    prediction, _ = grpc_stubs(type("Server", (), {"grpc_address": grpc_address}))
    stable = predict_request("pinned", {"input": X})
    stable.model_spec.version_label = "stable"  # the config's version_labels, over gRPC
    answer = prediction.Predict(stable, timeout=10)
    assert answer.model_spec.version.value == 1
    np.testing.assert_allclose(np.array(answer.outputs["prediction"].float_val).reshape(X.shape),
                               computed_by(pinned / "1"), rtol=1e-6)

    big = requests.post(f"{rest}/v1/models/curve:predict", json={"instances": [[0.5]] * 1000}, timeout=10)
    assert big.status_code == 413 and "--max-request-bytes (4096 bytes)" in big.json()["error"]
    with pytest.raises(grpc.RpcError) as refused:
        prediction.Predict(predict_request("curve", {"input": np.zeros((2000, 1), np.float32)}), timeout=10)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    small = requests.post(f"{rest}/v1/models/curve:predict", json={"instances": [[0.5]] * 100}, timeout=10)
    assert small.status_code == 200

    process.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends
    assert output.finished(30) == 0, output.text()
    assert "stopping the server" in output.text()
    assert "Traceback" not in output.text() and "KeyboardInterrupt" not in output.text()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{rest}/v1/models/curve", timeout=5)


@pytest.mark.claim('at most 1000 REST connections open at once', note='(1000 by default)')
@pytest.mark.claim('`--max_batch_size` default 32, `--batch_timeout_micros` default 1000')
@pytest.mark.claim('`--max-request-bytes` (64 MiB)', note='(64 MiB default)')
@pytest.mark.claim(
    "each server option is defined once (`serving/options.py`): the flags' defaults are `ServerOptions()`'s, and "
    '`train --serve` forwards flags that give back the same options')
def test_serve_flag_defaults_reach_the_server_options():
    from experiments_manager.cli import build_parser
    from experiments_manager.serving.options import BatchingOptions, ServerOptions, from_arguments

    arguments = build_parser().parse_args(["serve", "--model_dir", "EXP", "--enable_batching"])
    options = from_arguments(arguments, 8500)
    assert options.max_request_bytes == 64 * 1024 * 1024
    assert options.batching == BatchingOptions(max_batch_size=32, batch_timeout_micros=1000)
    assert (options.host, options.rest_port, options.poll_seconds) == ("127.0.0.1", 8501, 1.0)
    assert from_arguments(build_parser().parse_args(["serve", "--model_dir", "EXP"]), 8500).batching is None
    assert options.request_seconds == 30.0  # --rest_api_timeout_in_ms, TF Serving's 30000 ms
    assert options.max_connections == 1000
    timed = build_parser().parse_args(["serve", "--model_dir", "EXP", "--rest_api_timeout_in_ms", "1500"])
    assert from_arguments(timed, 8500).request_seconds == 1.5
    # one definition: the command line's defaults are the dataclasses' (ServerOptions() is what the API serves with)
    assert from_arguments(build_parser().parse_args(["serve", "--model_dir", "EXP"]), 8500) == ServerOptions()


@pytest.mark.claim(
    "each server option is defined once (`serving/options.py`): the flags' defaults are `ServerOptions()`'s, and "
    '`train --serve` forwards flags that give back the same options')
def test_train_serve_forwards_flags_that_give_back_the_same_options():
    """`train --serve` starts `serve` with flags written from the options it parsed (`as_arguments`): parsed again
    they are the same options, batching, the REST timeout in ms and a chosen or absent gRPC port included."""
    from experiments_manager.cli import build_parser
    from experiments_manager.serving.options import as_arguments, from_arguments

    parser = build_parser()
    given = ["--host", "0.0.0.0", "--grpc-port", "9100", "--rest-port", "0", "--file_system_poll_wait_seconds",
             "0.25", "--max-request-bytes", "1000", "--rest_api_timeout_in_ms", "1500", "--enable_batching",
             "--max_batch_size", "8", "--batch_timeout_micros", "20"]
    for flags, port_given in ((given, True), ([], False), (["--enable_batching"], False)):
        options = from_arguments(parser.parse_args(["serve", "--model_dir", "EXP", *flags]), 9100 if port_given else 0)
        forwarded = as_arguments(options, grpc_port_given=port_given)
        again = parser.parse_args(["serve", "--model_dir", "EXP", *forwarded])
        assert ("--grpc-port" in forwarded) == port_given and again.grpc_port == (9100 if port_given else None)
        assert from_arguments(again, options.grpc_port) == options, forwarded


TIMED_CLIENT = [
    "import time as _time",
    "class Client_IO:",
    "    def __init__(self, clientInitSpecs, debugMode):",
    "        self.log = open(clientInitSpecs['model_dir'] + '/request_times', 'w')",
    "    def getInputData(self, idx):",
    "        if idx == 4:",
    "            raise StopIteration",
    "        self.log.write(f'{_time.monotonic()}\\n')",
    "        return {'input': np.full((1, 1), idx, np.float32)}",
    "    def decodeResponse(self, result):",
    "        print('answer', list(result.outputs['prediction'].float_val))",
    "    def finalize(self):",
    "        self.log.close()",
]


@pytest.mark.slow
@pytest.mark.claim('`predict` uses `tensorflow_server_address:tensorflow_server_port` without `--server`')
@pytest.mark.claim('`--interval S` paces requests', note='(lower bound on the gaps between `getInputData` calls)')
def test_predict_without_server_uses_the_settings_address_and_paces_requests(run_cli, model_server, base_path, trained,
                                                                             tmp_path):
    server = model_server([ModelSource(trained.model_name, base_path)])
    interval = 0.4
    experiment = client_variant(trained.dir, tmp_path, TIMED_CLIENT + [
        "tensorflow_server_address = '127.0.0.1'", f"tensorflow_server_port = {server.grpc_port}"])
    result = run_cli("predict", "--model_dir", str(experiment), "--predict_stream", "-1", "--interval", str(interval))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("answer [") == 4
    assert f"4 requests answered by {trained.model_name} versions [1] at 127.0.0.1:{server.grpc_port}" in result.stdout
    times = [float(line) for line in (experiment / "request_times").read_text().split()]
    gaps = np.diff(times)
    print("gaps between requests (s):", np.round(gaps, 3).tolist())
    assert len(gaps) == 3 and gaps.min() >= interval * 0.97, gaps  # a lower bound only: a busy machine adds time


ENDLESS_CLIENT = [
    "class Client_IO:",
    "    def __init__(self, clientInitSpecs, debugMode):",
    "        self.marker = clientInitSpecs['model_dir'] + '/finalized'",
    "    def getInputData(self, idx):",
    "        return {'input': np.full((1, 1), 0.5, np.float32)}",
    "    def decodeResponse(self, result):",
    "        print('answer from version', result.model_spec.version.value)",
    "    def finalize(self):",
    "        open(self.marker, 'w').write('called')",
]


def connected_to(port):
    """True when a TCP connection to `port` is established on this machine (/proc/net/tcp and tcp6: gRPC's
    sockets are dual-stack, their IPv4 connections are listed as IPv4-mapped IPv6)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            remote, state = line.split()[2:4]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                return True
    return False


@pytest.mark.slow
@pytest.mark.claim('N < 0 until Ctrl-C')
@pytest.mark.claim('`--wait-for-server S` waits for a first version')
def test_predict_waits_for_a_first_version_then_streams_until_ctrl_c_and_finalizes(start_cli, model_server, tmp_path,
                                                                                    trained):
    base = tmp_path / "models" / trained.model_name
    base.mkdir(parents=True)
    server = model_server([ModelSource(trained.model_name, base)])  # up, but no version yet
    experiment = client_variant(trained.dir, tmp_path, ENDLESS_CLIENT)
    process = start_cli("predict", "--model_dir", str(experiment), "--server", server.grpc_address,
                        "--predict_stream", "-1", "--wait-for-server", "60", "--interval", "0.05", warm=True)
    output = Output(process)
    wait_for(lambda: process.poll() is not None or connected_to(server.grpc_port), 60, "predict to ask for versions")
    assert process.poll() is None, "predict did not wait for a version:\n" + output.text()
    publish_version(base, 1, trained.dir / "exported_models" / str(trained.versions[-1]))
    output.wait_for(r"answer from version 1", 30)
    wait_for(lambda: output.text().count("answer from version 1") >= 3, 10, "three answers")

    process.send_signal(signal.SIGINT)
    assert output.finished(30) == 0, output.text()
    assert re.search(rf"\d+ requests answered by {trained.model_name} versions \[1\]", output.text()), output.text()
    assert (experiment / "finalized").read_text() == "called"
    assert "Traceback" not in output.text() and "error:" not in output.text()


@pytest.mark.slow
@pytest.mark.claim('N < 0 until Ctrl-C')
def test_ctrl_c_while_predict_waits_for_the_server_ends_it_at_once(start_cli, model_server, tmp_path, trained):
    base = tmp_path / "models" / trained.model_name
    base.mkdir(parents=True)
    server = model_server([ModelSource(trained.model_name, base)])  # never gets a version
    experiment = client_variant(trained.dir, tmp_path, ENDLESS_CLIENT)
    process = start_cli("predict", "--model_dir", str(experiment), "--server", server.grpc_address,
                        "--predict_stream", "-1", "--wait-for-server", "300", warm=True)
    output = Output(process)
    wait_for(lambda: process.poll() is not None or connected_to(server.grpc_port), 60, "predict to ask for versions")
    assert process.poll() is None, "predict did not wait for a version:\n" + output.text()
    process.send_signal(signal.SIGINT)
    wait_for(lambda: process.poll() is not None, 30, "predict to stop after Ctrl-C (it waits up to 300 s otherwise)")
    assert output.finished(5) == 0, output.text()
    assert "no request sent (stopped before the first request)" in output.text(), output.text()
    assert "Traceback" not in output.text()
    assert (experiment / "finalized").read_text() == "called"
