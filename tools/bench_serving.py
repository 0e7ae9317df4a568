"""Serving throughput and latency, side by side in one run, plus hot-reload latency.

Compares, at 1 and 16 concurrent clients, one request = one example:
  in-process   the SavedModel signature called directly by threads (the limit)
  flask        a minimal Flask app wrapping the same SavedModel (the usual hand-made server)
  rest, grpc   `experiments-manager serve`, without and with --enable_batching
Each server runs in its own process; the clients run in this process.
Then measures hot reload: rename of a new version -> first answer by it (default 1 s poll).

With --big-request: what one valid 10^6-row REST request (about 20 MB of JSON) costs the other clients and the
server. Rounds alternate "4 small clients alone" and "4 small clients while one client sends the big request";
reported: the small requests' p50 / max latency in each, the big request's own time, and the server's CPU time
and peak memory against the request's size.

With --memory: what one valid REST request of 10, 30 and 60 MB (rows of one number, written short or at full
precision) costs the server's memory: its peak over its idle memory (VmHWM, reset before each request), the peak of
its whole process tree (sampled every 10 ms: a JSON worker process of earlier versions included), what it still
holds 2 s after the answer, and the request's time. `--python PATH` runs the server with another interpreter, e.g.
a venv whose one .pth file lists a `git worktree` of an earlier commit, then this venv's site-packages: side by
side rows of that code.

With --grpc-memory: the same for one gRPC Predict of 30 and 60 MB to a model with two outputs (its answer twice the
request), the input sent as `tensor_content` (what `tf.make_tensor_proto` writes) and as `float_val`: the server's
peak over idle, the outcome (answered, or refused before the work when the answer would pass the 64 MiB answer
limit) and the time.

Usage:  python tools/bench_serving.py [--seconds 3]
        python tools/bench_serving.py --big-request [--rounds 4] [--python PATH]
        python tools/bench_serving.py --memory [--python PATH] [--sizes 10,30,60]
        python tools/bench_serving.py --grpc-memory [--python PATH] [--sizes 30,60] [--rounds 4]
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


def export_model(base, two_outputs=False):
    """A regression-sized Keras model (Dense 32 -> 1) exported as version 1, the engine's way; `two_outputs`: its
    prediction and that prediction's sigmoid, as two outputs (an answer twice the request)."""
    import keras
    import tensorflow as tf

    model = keras.Sequential([keras.Input((1,), name="input"), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])

    class Served(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="input")])
        def served_model(self, input):
            prediction = self.model(input, training=False)
            return {"prediction": prediction, **({"probability": tf.sigmoid(prediction)} if two_outputs else {})}

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
    # PYTHONSAFEPATH: the current folder (a checkout) must not shadow the interpreter's own experiments_manager,
    # in the server and in the processes it starts
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONSAFEPATH="1"))


def serve_command(config, grpc_port, rest_port, batching, python=None):
    """The server's command line (`python`: another interpreter than this one)."""
    command = [str(python or sys.executable), "-m", "experiments_manager", "serve", "--model_config_file", str(config),
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


def server_usage(pid):
    """(CPU seconds of the server and its descendants, e.g. its JSON worker, so far; its own peak resident MiB)."""
    import psutil

    server = psutil.Process(pid)
    cpu = 0.0
    for process in [server, *server.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        cpu += times.user + times.system + times.children_user + times.children_system
    peak = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmHWM:"))
    return cpu, peak / 1024


def small_clients_during(port, clients, seconds, big_body=None):
    """Runs `clients` small-request REST clients for `seconds`; with `big_body`, one more client sends it once,
    0.5 s in. Returns (small latencies in s during the big request, or all of them without one; big seconds)."""
    path = f"/v1/models/{MODEL}:predict"
    stop = threading.Event()
    stamps = [[] for _ in range(clients)]
    window = {}

    def small(index):
        ask = rest_session_factory(port, path)()
        while not stop.is_set():
            started = time.perf_counter()
            ask()
            stamps[index].append((started, time.perf_counter()))

    def big():
        time.sleep(0.5)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        window["start"] = time.perf_counter()
        connection.request("POST", path, big_body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        window["end"] = time.perf_counter()
        if answer.status != 200:
            raise RuntimeError(f"big request answered {answer.status}")

    with concurrent.futures.ThreadPoolExecutor(clients + 1) as pool:
        futures = [pool.submit(small, index) for index in range(clients)]
        if big_body is not None:
            futures.append(pool.submit(big))
        time.sleep(seconds)
        if big_body is not None:
            futures[-1].result()  # the small clients go on until the big answer is in
        stop.set()
        for future in futures:
            future.result()
    if big_body is None:
        return [end - start for record in stamps for start, end in record], None
    overlapping = [end - start for record in stamps for start, end in record
                   if end > window["start"] and start < window["end"]]
    return overlapping, window["end"] - window["start"]


def big_request(config, rounds, python=None, rows=10**6, clients=4, seconds=3.0):
    """Alternates rounds without and with one `rows`-row request beside `clients` small clients."""
    body = json.dumps({"instances": np.random.default_rng(0).random((rows, 1)).round(6).tolist()}).encode()
    grpc_port, rest_port = free_port(), free_port()
    server = start(serve_command(config, grpc_port, rest_port, False, python))
    table = []
    try:
        wait_model(rest_port, server)
        small_clients_during(rest_port, clients, 1.0)  # warm up
        for index in range(rounds):
            for with_big in (False, True) if index % 2 == 0 else (True, False):
                cpu_before, _ = server_usage(server.pid)
                latencies, big_seconds = small_clients_during(rest_port, clients, seconds, body if with_big else None)
                cpu_after, peak = server_usage(server.pid)
                latencies.sort()
                table.append((index, with_big, len(latencies), latencies[len(latencies) // 2] * 1e3,
                              latencies[-1] * 1e3, big_seconds, cpu_after - cpu_before, peak))
    finally:
        server.terminate()
        server.wait()
    print(f"one request of {rows} rows: {len(body) / 2**20:.1f} MiB of JSON; {clients} small clients beside it")
    print(f"{'round':>5} {'big':>4} {'small n':>8} {'p50 ms':>8} {'max ms':>9} {'big s':>7} {'server+worker CPU s':>20} "
          f"{'server peak MiB':>16}")
    for index, with_big, count, p50, worst, big_seconds, cpu, peak in table:
        print(f"{index:>5} {'yes' if with_big else 'no':>4} {count:>8} {p50:>8.2f} {worst:>9.1f} "
              f"{big_seconds if big_seconds is not None else float('nan'):>7.2f} {cpu:>20.2f} {peak:>16.0f}")
    alone = statistics.median(row[4] for row in table if not row[1])
    beside = statistics.median(row[4] for row in table if row[1])
    print(f"median of the rounds' worst small-request latency: {alone:.1f} ms alone, {beside:.1f} ms beside the "
          f"big request (its own time: median {statistics.median(row[5] for row in table if row[1]):.2f} s)")
    print(f"server peak memory {table[-1][7]:.0f} MiB for a {len(body) / 2**20:.1f} MiB request")


def tree_rss(pid):
    """Resident MiB of a process and its descendants."""
    import psutil

    total = 0
    try:
        server = psutil.Process(pid)
        for process in [server, *server.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return total / 2**20


def status_mib(pid, key):
    return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith(key + ":")) / 1024


def memory_body(megabytes, style, seed=0):
    """A valid `instances` body of about `megabytes` MB: rows of one number, "short" (0.5) or "full" (repr)."""
    row_bytes = 7 if style == "short" else 23
    rows = int(megabytes * 1e6 // row_bytes)
    values = np.random.default_rng(seed).random(rows)
    if style == "short":
        text = ", ".join("[%.1f]" % value for value in values)
    else:
        text = ", ".join(f"[{value!r}]" for value in values.tolist())
    return ('{"instances": [' + text + "]}").encode(), rows


def memory(config, python, sizes, styles=("short", "full")):
    grpc_port, rest_port = free_port(), free_port()
    server = start(serve_command(config, grpc_port, rest_port, False, python))
    rows_out = []
    try:
        wait_model(rest_port, server)
        path = f"/v1/models/{MODEL}:predict"
        for _ in range(3):
            small_clients_during(rest_port, 1, 0.3)  # warm
        for size in sizes:
            for style in styles:
                body, rows = memory_body(size, style)
                time.sleep(1.0)
                idle_server, idle_tree = status_mib(server.pid, "VmRSS"), tree_rss(server.pid)
                Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
                peak_tree, stop = [idle_tree], threading.Event()

                def sample():
                    while not stop.is_set():
                        peak_tree[0] = max(peak_tree[0], tree_rss(server.pid))
                        time.sleep(0.01)

                sampler = threading.Thread(target=sample)
                sampler.start()
                connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=600)
                started = time.perf_counter()
                connection.request("POST", path, body, {"Content-Type": "application/json"})
                answer = connection.getresponse()
                data = answer.read()
                seconds = time.perf_counter() - started
                connection.close()
                stop.set()
                sampler.join()
                if answer.status != 200 or len(json.loads(data)["predictions"]) != rows:
                    raise RuntimeError(f"{size} MB {style}: answered {answer.status}: {data[:200]!r}")
                peak_server = status_mib(server.pid, "VmHWM")
                time.sleep(2.0)
                after = tree_rss(server.pid)
                rows_out.append((size, style, len(body) / 2**20, len(data) / 2**20, seconds, idle_tree,
                                 peak_server - idle_server, peak_tree[0] - idle_tree, after - idle_tree))
                del body, data
    finally:
        server.terminate()
        server.wait()
    print(f"server: {python or sys.executable}")
    print(f"{'body':>8} {'style':>6} {'body MiB':>9} {'answer MiB':>11} {'time s':>7} {'idle MiB':>9} "
          f"{'server peak +MiB':>17} {'x body':>7} {'tree peak +MiB':>15} {'x body':>7} {'held after +MiB':>16}")
    for size, style, body_mib, answer_mib, seconds, idle, server_peak, tree_peak, held in rows_out:
        print(f"{size:>6}MB {style:>6} {body_mib:>9.1f} {answer_mib:>11.1f} {seconds:>7.2f} {idle:>9.0f} "
              f"{server_peak:>17.0f} {server_peak / body_mib:>7.1f} {tree_peak:>15.0f} {tree_peak / body_mib:>7.1f} "
              f"{held:>16.0f}")


def grpc_memory(base, python, sizes, rounds):
    """One gRPC Predict of each size and encoding at a time to a two-output model: the server's peak over idle."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    export_model(base, two_outputs=True)
    config = base.parent / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base}" model_platform: "tensorflow" }} }}')
    grpc_port, rest_port = free_port(), free_port()
    server = start(serve_command(config, grpc_port, rest_port, False, python))
    results = []
    try:
        wait_model(rest_port, server)
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=[
            ("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)])
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for round_index in range(rounds):
            for size in sizes:
                for encoding in ("tensor_content", "float_val"):
                    values = np.random.default_rng(round_index).random((int(size * 1e6 // 4), 1)).astype(np.float32)
                    request = predict_pb2.PredictRequest()
                    request.model_spec.name = MODEL
                    if encoding == "tensor_content":
                        request.inputs["input"].CopyFrom(tf.make_tensor_proto(values))
                    else:
                        proto = request.inputs["input"]
                        proto.dtype = tf.float32.as_datatype_enum
                        proto.tensor_shape.dim.add(size=values.shape[0])
                        proto.tensor_shape.dim.add(size=1)
                        proto.float_val.extend(values[:, 0])
                    request_mib = request.ByteSize() / 2**20
                    time.sleep(1.0)
                    idle = status_mib(server.pid, "VmRSS")
                    Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
                    cpu_before, _ = server_usage(server.pid)
                    started = time.perf_counter()
                    try:
                        reply = stub.Predict(request, timeout=600)
                        outcome = f"answered {reply.ByteSize() / 2**20:.0f} MiB"
                    except grpc.RpcError as error:
                        outcome = f"{error.code().name}: {error.details()[:60]}"
                    seconds = time.perf_counter() - started
                    cpu_after, _ = server_usage(server.pid)
                    peak = status_mib(server.pid, "VmHWM") - idle
                    results.append((round_index, size, encoding, request_mib, idle, peak, seconds, cpu_after - cpu_before,
                                    outcome))
                    del request, values
    finally:
        server.terminate()
        server.wait()
    print(f"server: {python or sys.executable}")
    print(f"{'round':>5} {'size':>6} {'encoding':>15} {'request MiB':>12} {'idle MiB':>9} {'peak +MiB':>10} "
          f"{'x request':>10} {'time s':>7} {'CPU s':>6}  outcome")
    for round_index, size, encoding, request_mib, idle, peak, seconds, cpu, outcome in results:
        print(f"{round_index:>5} {size:>4}MB {encoding:>15} {request_mib:>12.1f} {idle:>9.0f} {peak:>10.0f} "
              f"{peak / request_mib:>10.1f} {seconds:>7.2f} {cpu:>6.2f}  {outcome}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per case")
    parser.add_argument("--big-request", action="store_true",
                        help="measure what one 10^6-row REST request costs the other clients and the server")
    parser.add_argument("--rounds", type=int, default=4, help="with --big-request: rounds of each kind (default 4)")
    parser.add_argument("--memory", action="store_true",
                        help="measure the server's peak and retained memory for one 10, 30 and 60 MB REST request")
    parser.add_argument("--sizes", default=None, help="with --memory: body sizes in MB (default 10,30,60); with "
                        "--grpc-memory: request sizes (default 30,60)")
    parser.add_argument("--grpc-memory", action="store_true", help="the memory of one big gRPC request (see above)")
    parser.add_argument("--python", type=Path,
                        help="with --memory or --big-request: the server's interpreter (default: this one)")
    parser.add_argument("--flask-server", nargs=2, metavar=("PORT", "BASE"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.flask_server:
        return flask_server(int(arguments.flask_server[0]), Path(arguments.flask_server[1]))

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder) / MODEL
        if arguments.grpc_memory:
            return grpc_memory(base, arguments.python, [float(size) for size in (arguments.sizes or "30,60").split(",")],
                               arguments.rounds)
        export_model(base)
        config = Path(folder) / "models.config"
        config.write_text(f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base}" model_platform: "tensorflow" }} }}')
        if arguments.big_request:
            return big_request(config, arguments.rounds, arguments.python)
        if arguments.memory:
            return memory(config, arguments.python, [float(size) for size in (arguments.sizes or "10,30,60").split(",")])
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
