"""The streaming client: the settings' `Client_IO` loop against a TF Serving compatible server.

For each index, `Client_IO.getInputData(idx)` gives a dict of arrays, sent as
a gRPC PredictRequest to the experiment's model (signature = model name, as
the original framework did); `decodeResponse(result)` gets the
PredictResponse. `finalize()` is always called, even after an error.
"""

import dataclasses
import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Optional, cast

from experiments_manager.utils.command_name import command_name
from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.settings import Settings

_LOG = logging.getLogger(__name__)


class ClientError(Exception):
    """The server is down, too slow, or refused a request: one line for the user."""


@dataclasses.dataclass
class StreamReport:
    """What a streaming run did.

    Args:
        requests: requests answered.
        versions: model versions that answered, in order of first appearance.
        latencies_ms: round-trip time of each answered request.
    """

    requests: int = 0
    versions: list[int] = dataclasses.field(default_factory=list)
    latencies_ms: list[float] = dataclasses.field(default_factory=list)

    def percentile(self, fraction: float) -> Optional[float]:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else None


class StreamingClient:
    """Sends the requests of a `Client_IO` to a model server.

    Args:
        settings: the experiment's `Settings` (Client_IO, timeout, message size).
        address: 'host:port' of the gRPC server.
        model_name: the served model name.
        client_specs: the dict given to `Client_IO(clientInitSpecs, debugMode)`.
        debug: `debugMode` for Client_IO.
        signature_name: the signature asked for (default None: the model name, the exporter's name of the model's
            signature; a `serve --models_dir` server serves the model under another name).

    Example:

    ```python
    client = StreamingClient(settings, "127.0.0.1:8500", "model_curve_fitting")
    report = client.stream(10)
    ```
    """

    def __init__(self, settings: "Settings", address: str, model_name: str,
                 client_specs: Optional[dict[str, Any]] = None, debug: bool = False,
                 signature_name: Optional[str] = None) -> None:
        if settings.serving.client_io is None:
            raise UserInputError(
                f"{settings.path.name}: Client_IO: expected a class Client_IO(clientInitSpecs, debugMode) "
                "with getInputData, decodeResponse and finalize, to run predict"
            )
        self.settings = settings
        self.address = address
        self.model_name = model_name
        self.signature_name = signature_name or model_name
        self.client_specs = dict(client_specs or {})
        self.debug = debug
        self.timeout = settings.serving.client_timeout_secs

    def _channel(self) -> Any:
        import grpc

        size = self.settings.serving.grpc_max_message_length
        return grpc.insecure_channel(
            self.address,
            options=[("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)],
        )

    def wait_until_served(self, seconds: float, stop: Optional[threading.Event] = None) -> None:
        """Waits (polling GetModelStatus) until the model has an available version, or `stop` is set (Ctrl-C)."""
        import grpc
        from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

        stop = stop or threading.Event()
        deadline = time.monotonic() + seconds
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = self.model_name
        with self._channel() as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            while True:
                try:
                    answer = stub.GetModelStatus(request, timeout=max(0.1, min(self.timeout, deadline - time.monotonic())))
                    if any(status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE for status in answer.model_version_status):
                        return
                except grpc.RpcError as error:
                    if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.DEADLINE_EXCEEDED):
                        raise ClientError(self._explain(error, "status request")) from None
                if time.monotonic() >= deadline:
                    raise ClientError(f"{self.model_name} not served at {self.address} after waiting {seconds:g} s")
                if stop.wait(0.2):
                    return

    def stream(self, count: int, interval: float = 0.0, stop: Optional[threading.Event] = None) -> StreamReport:
        """Runs `count` requests (count < 0: until getInputData raises StopIteration).

        Args:
            count: number of requests; < 0 for no limit.
            interval: seconds to pause between requests.
            stop: a `threading.Event` that ends the stream early (Ctrl-C).
        """
        stop = stop or threading.Event()
        client_io = cast(Any, self.settings.serving.client_io)(self.client_specs, self.debug)  # checked a class
        report = StreamReport()
        try:
            with self._channel() as channel:
                stub = self._stub(channel)
                indices = itertools.count() if count < 0 else range(count)
                for index in indices:
                    if stop.is_set() or (index and interval and stop.wait(interval)):
                        break
                    try:
                        inputs = client_io.getInputData(index)
                    except StopIteration:
                        break
                    result = self._predict(stub, index, inputs, report)
                    client_io.decodeResponse(result)
        finally:
            client_io.finalize()
        return report

    def _stub(self, channel: object) -> object:
        """What `Predict(request, timeout=...)` is called on: the server's PredictionService (`predict --edge`: the
        exported file in its local runtime, `edge.predict.LocalPredictionService`)."""
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        return prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def _predict(self, stub: Any, index: int, inputs: Any, report: StreamReport) -> Any:
        import grpc

        request = self._request(index, inputs)
        started = time.perf_counter()
        try:
            result = stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise ClientError(self._explain(error, f"request {index}")) from None
        report.latencies_ms.append((time.perf_counter() - started) * 1000)
        report.requests += 1
        version = result.model_spec.version.value
        if version not in report.versions:
            report.versions.append(version)
            _LOG.info("request %d answered by %s version %d", index, self.model_name, version)
        return result

    def _request(self, index: int, inputs: Any) -> Any:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        if not isinstance(inputs, dict):
            raise UserInputError(
                f"{self.settings.path.name}: Client_IO.getInputData: expected a dict input name -> array, "
                f"got {type(inputs).__name__} at index {index}"
            )
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = self.signature_name
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        return request

    def _explain(self, error: Any, what: str) -> str:
        import grpc

        code = error.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            return f"server {self.address} not reachable ({what}): is `{command_name()} serve` running there?"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return (
                f"{what}: no answer from {self.address} within {self.timeout:g} s "
                "(settings: serving_client_timeout_int_secs)"
            )
        return f"{what} refused by {self.address}: {code.name}: {error.details()}"
