"""Serving throughput and latency, side by side in one run, plus hot-reload latency.

Compares, at 1 and 16 concurrent clients, one request = one example:
  in-process   the SavedModel signature called directly by threads (the limit)
  flask        a minimal Flask app wrapping the same SavedModel (the usual hand-made server)
  rest, grpc   `experiments-manager serve`, without and with --enable_batching
Each server runs in its own process; the clients run in this process.
Then measures hot reload: rename of a new version -> first answer by it (default 1 s poll).

Usage:  python tools/bench_serving.py [--seconds 3]
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

MODEL = "bench_model"
EXAMPLE = [[0.5]]


def export_model(base):
    """A regression-sized Keras model (Dense 32 -> 1) exported as version 1, the engine's way."""
    import keras
    import tensorflow as tf

    model = keras.Sequential([keras.Input((1,), name="input"), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])

    class Served(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="input")])
        def served_model(self, input):
            return {"prediction": self.model(input, training=False)}

    module = Served()
    signature = module.served_model.get_concrete_function()
    tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": signature, MODEL: signature})


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_port(port, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} not open after {timeout}s")


def wait_model(rest_port, process, timeout=120):
    """Waits until the server reports the model AVAILABLE (the port opens before models load)."""
    wait_port(rest_port, process, timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=5)
        try:
            connection.request("GET", f"/v1/models/{MODEL}")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    raise RuntimeError(f"{MODEL} not available after {timeout}s")


def load(call, clients, seconds):
    """Runs `call()` in `clients` threads for `seconds`; returns (qps, p50 ms, p99 ms)."""
    stop = threading.Event()
    latencies = [[] for _ in range(clients)]

    def worker(index):
        record = latencies[index]
        session = call()
        for _ in range(20):
            session()  # warm connections and caches
        while not stop.is_set():
            started = time.perf_counter()
            session()
            record.append(time.perf_counter() - started)

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(worker, index) for index in range(clients)]
        time.sleep(seconds)
        stop.set()
        for future in futures:
            future.result()
    merged = sorted(value for record in latencies for value in record)
    return len(merged) / seconds, merged[len(merged) // 2] * 1e3, merged[int(len(merged) * 0.99)] * 1e3


def in_process_session_factory(base):
    import tensorflow as tf

    function = tf.saved_model.load(str(base / "1")).signatures["serving_default"]
    example = np.array(EXAMPLE, np.float32)

    def factory():
        return lambda: function(input=tf.constant(example))["prediction"].numpy()

    return factory


def rest_session_factory(port, path):
    body = json.dumps({"instances": EXAMPLE}).encode()

    def factory():
        connection = http.client.HTTPConnection("127.0.0.1", port)

        def ask():
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            data = answer.read()
            if answer.status != 200:
                raise RuntimeError(data)
            return data

        return ask

    return factory


def grpc_session_factory(port):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["input"].CopyFrom(tf.make_tensor_proto(np.array(EXAMPLE, np.float32)))

    def factory():
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        return lambda: stub.Predict(request, timeout=10)

    return factory


def flask_server(port, base):
    """The hand-made approach: Flask, one model call per request."""
    import tensorflow as tf
    from flask import Flask, jsonify, request

    function = tf.saved_model.load(str(base / "1")).signatures["serving_default"]
    app = Flask("bench")

    @app.post("/predict")
    def predict():
        inputs = np.array(request.get_json()["instances"], np.float32)
        return jsonify({"predictions": function(input=tf.constant(inputs))["prediction"].numpy().tolist()})

    app.run("127.0.0.1", port, threaded=True)


def start(command):
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def serve_command(config, grpc_port, rest_port, batching):
    command = [sys.executable, "-m", "experiments_manager", "serve", "--model_config_file", str(config),
               "--grpc-port", str(grpc_port), "--rest-port", str(rest_port)]
    return command + (["--enable_batching", "--max_batch_size", "32", "--batch_timeout_micros", "500"] if batching else [])


def hot_reload(config, base, rounds=5):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    grpc_port, rest_port = free_port(), free_port()
    server = start(serve_command(config, grpc_port, rest_port, False))
    try:
        wait_model(rest_port, server)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.inputs["input"].CopyFrom(tf.make_tensor_proto(np.array(EXAMPLE, np.float32)))
        delays = []
        for version in range(2, 2 + rounds):
            time.sleep(0.37 * version % 1)  # renames land at various points of the poll cycle
            shutil.copytree(base / "1", base / f".tmp-{version}")
            renamed = time.perf_counter()
            os.replace(base / f".tmp-{version}", base / str(version))
            while stub.Predict(request, timeout=10).model_spec.version.value != version:
                time.sleep(0.005)
            delays.append(time.perf_counter() - renamed)
        return delays
    finally:
        server.terminate()
        server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per case")
    parser.add_argument("--flask-server", nargs=2, metavar=("PORT", "BASE"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.flask_server:
        return flask_server(int(arguments.flask_server[0]), Path(arguments.flask_server[1]))

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder) / MODEL
        export_model(base)
        config = Path(folder) / "models.config"
        config.write_text(f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base}" model_platform: "tensorflow" }} }}')
        results = {}
        factory = in_process_session_factory(base)
        for clients in (1, 16):
            results[("in-process", clients)] = load(factory, clients, arguments.seconds)

        flask_port = free_port()
        flask = start([sys.executable, __file__, "--flask-server", str(flask_port), str(base)])
        try:
            wait_port(flask_port, flask)
            for clients in (1, 16):
                results[("flask", clients)] = load(rest_session_factory(flask_port, "/predict"), clients, arguments.seconds)
        finally:
            flask.terminate()
            flask.wait()

        added = []
        for batching in (False, True):
            grpc_port, rest_port = free_port(), free_port()
            server = start(serve_command(config, grpc_port, rest_port, batching))
            label = "+batching" if batching else ""
            try:
                wait_model(rest_port, server)
                for clients in (1, 16):
                    path = f"/v1/models/{MODEL}:predict"
                    results[(f"rest{label}", clients)] = load(rest_session_factory(rest_port, path), clients, arguments.seconds)
                    results[(f"grpc{label}", clients)] = load(grpc_session_factory(grpc_port), clients, arguments.seconds)
                if not batching:  # latency added by the server: alternate short rounds against drifting load
                    for _ in range(7):
                        direct = load(factory, 1, 1.0)[1]
                        added.append(load(grpc_session_factory(grpc_port), 1, 1.0)[1] - direct)
            finally:
                server.terminate()
                server.wait()
        delays = hot_reload(config, base)

    print(f"{'case':<18}{'clients':>8}{'QPS':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for (case, clients), (qps, p50, p99) in results.items():
        print(f"{case:<18}{clients:>8}{qps:>10.0f}{p50:>10.2f}{p99:>10.2f}")
    best_rest16 = max(results[("rest+batching", 16)][0], results[("rest", 16)][0])
    print(f"\nratio QPS rest+batching/flask at 16 clients: {results[('rest+batching', 16)][0] / results[('flask', 16)][0]:.2f} (target >= 3)")
    print(f"ratio QPS grpc+batching/flask at 16 clients: {results[('grpc+batching', 16)][0] / results[('flask', 16)][0]:.2f}")
    print(f"ratio QPS best rest/flask at 16 clients:     {best_rest16 / results[('flask', 16)][0]:.2f}")
    print(f"gRPC p50 added over in-process at 1 client: median {statistics.median(added):.2f} ms over {len(added)} "
          f"alternating 1 s rounds (min {min(added):.2f}, max {max(added):.2f}; target <= 1 ms)")
    print(f"hot reload rename -> first answer: median {statistics.median(delays):.2f} s, max {max(delays):.2f} s "
          f"(target <= 1.5 s; {len(delays)} rounds, poll 1 s)")


if __name__ == "__main__":
    main()
