"""`predict --edge FILE`: the settings' `Client_IO` against an exported file in its local runtime, no server.

The streaming client (`serving/client.py`) runs unchanged: `Client_IO.getInputData` gives the arrays, the client
builds the gRPC `PredictRequest` it sends a server; here `LocalPredictionService.Predict` answers it instead of the
server: the inputs read from their TensorProtos with the server's own checks (`serving/tensor_protos.py`, against the
SavedModel's signature kept in `signature.json` beside the file), the file run by LiteRT or onnxruntime, and the
outputs written into the `PredictResponse` a server sends (typed TensorProtos, `model_spec` name, version and
signature), which `Client_IO.decodeResponse` gets. So the same client code drives the server and the device.

Example:

```python
service = LocalPredictionService("RUN/edge/litert-int8/model.tflite")
client = EdgeClient(settings, service, "model_curve_fitting")
client.stream(10)          # Client_IO's requests, answered on this machine
```
"""

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import grpc

from experiments_manager.edge.formats import SIGNATURE_FILE, format_of_file
from experiments_manager.serving.client import ClientError, StreamingClient
from experiments_manager.utils.checksums import verify_manifest
from experiments_manager.utils.command_name import command_name
from experiments_manager.utils.errors import UserInputError, print_problems
from experiments_manager.utils.signals import SignalSafeEvent, signal_handlers

if TYPE_CHECKING:
    from experiments_manager.serving.errors import RequestError
    from experiments_manager.settings.loader import Settings


class LocalPredictionService:
    """A PredictionService stand-in whose `Predict` runs an exported file on this machine.

    Args:
        path: the exported model file (`RUN/edge/<format>-<quantization>/model.tflite` or `.onnx`), with its
            `signature.json` beside it.
        threads: the runtime's threads (default None: every core).

    Raises:
        UserInputError: no such file, no signature.json beside it, a file the runtime cannot run.

    Example:

    ```python
    LocalPredictionService("RUN/edge/onnx-none/model.onnx").Predict(request).outputs["prediction"].float_val
    ```
    """

    def __init__(self, path: "str | Path", threads: Optional[int] = None) -> None:
        import tensorflow as tf

        from experiments_manager.edge.runtime import open_model

        self.path = Path(path)
        self.format = format_of_file(self.path)
        described = self.path.parent / SIGNATURE_FILE
        try:
            info = json.loads(described.read_text())
            inputs = info["savedmodel"]["inputs"]
            self.version = int(info["version"])
        except (OSError, ValueError, KeyError, TypeError):
            raise UserInputError(f"--edge: expected {described} beside the model file (written by `export`), "
                                 "naming the version and its signature") from None
        self.specs = {tensor["name"]: tf.TensorSpec(tensor["shape"], tensor["dtype"], tensor["name"])
                      for tensor in inputs}
        self.model = open_model(self.path, threads)

    def Predict(self, request: Any, timeout: Optional[float] = None) -> Any:  # noqa: N802 - the stub's name
        """The `PredictResponse` a server sends for `request` (`timeout` is not used: the call is local).

        Args:
            request: a `PredictRequest` (the client's).
            timeout: the client's deadline (default None; not used).

        Example:

        ```python
        service.Predict(client._request(0, {"input": x})).model_spec.version.value   # 3
        ```

        Raises:
            grpc.RpcError: a request the server would refuse (names, dtypes, content, shapes, the model's own
                refusal, output_filter), with the server's code and message: the client says it in the server
                path's one line.
        """
        import numpy as np
        from tensorflow_serving.apis import predict_pb2

        from experiments_manager.serving.errors import RequestError
        from experiments_manager.serving.servable import check_shapes, filtered_outputs, refused_input
        from experiments_manager.serving.tensor_protos import arrays_from_protos, proto_from_array

        try:
            arrays = arrays_from_protos(request.inputs, self.specs)
            check_shapes(self.specs, arrays)  # the server's checks, in its order
            try:
                outputs = self.model.predict(arrays)
            except Exception as error:  # the runtime's own types (XNNPack's RuntimeError, onnxruntime's Fail, ...)
                raise refused_input(error) from None
            outputs = filtered_outputs(outputs, tuple(request.output_filter))
        except RequestError as error:
            raise _Refused(error) from None
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = self.version
        response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(proto_from_array(np.asarray(value)))
        return response


class _Refused(grpc.RpcError):
    """A `RequestError` as the gRPC error a server's refusal reaches the client as (`code()`, `details()`), so
    `StreamingClient._explain` says it in the server path's one line.

    Args:
        error: the `RequestError`.

    Example:

    ```python
    raise _Refused(RequestError("input 'input': expected shape [-1, 1] (-1 = any), got [1, 5]"))
    ```
    """

    def __init__(self, error: "RequestError") -> None:
        super().__init__(error.message)
        self.error = error

    def code(self) -> grpc.StatusCode:
        """The server's status code (INVALID_ARGUMENT for a bad input)."""
        return self.error.code

    def details(self) -> str:
        """The server's message."""
        return self.error.message


class EdgeClient(StreamingClient):
    """The streaming client with a `LocalPredictionService` where the server would be.

    Args:
        settings: the experiment's `Settings` (its Client_IO).
        service: the `LocalPredictionService`.
        model_name: the model name the requests carry.
        client_specs: the dict given to `Client_IO(clientInitSpecs, debugMode)` (default None: {}).
        debug: `debugMode` for Client_IO (default False).

    Example:

    ```python
    EdgeClient(settings, LocalPredictionService(path), "model_curve_fitting").stream(3)
    ```
    """

    def __init__(self, settings: "Settings", service: LocalPredictionService, model_name: str,
                 client_specs: Optional[dict[str, Any]] = None, debug: bool = False) -> None:
        super().__init__(settings, str(service.path), model_name, client_specs, debug)
        self.service = service

    def _channel(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def _stub(self, channel: object) -> LocalPredictionService:
        return self.service


def predict_on_device(run: "str | Path", edge_file: "str | Path", count: int = 1, interval: float = 0.0,
                      debug: bool = False, threads: Optional[int] = None, trust_code: bool = False) -> int:
    """Streams the run's Client_IO requests to `edge_file` on this machine; prints the outcome; returns the exit code.

    Args:
        run: the experiment folder (its settings' Client_IO).
        edge_file: the exported model file.
        count: requests; < 0: until getInputData raises StopIteration (default 1).
        interval: seconds between requests (default 0).
        debug: Client_IO's debugMode (default False).
        threads: the runtime's threads (default None: every core).
        trust_code: run the folder's copies although another user owns them (default False: refused in one line).

    Example:

    ```python
    predict_on_device(run, f"{run}/edge/litert-int8/model.tflite", count=10)
    ```
    """
    from experiments_manager.edge.formats import require_runtime
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings import load_experiment_settings

    require_runtime(edge_file)  # the file's runtime only: a device needs no converter
    damage = verify_manifest(Path(edge_file).parent)  # a file copied wrong to a device answers garbage, not errors
    if damage is not None:
        raise UserInputError(f"--edge: {Path(edge_file).parent}: {damage}; export it again ({command_name()} "
                             "export RUN --format ...)")
    experiment = Experiment.open(run, trust_code=trust_code)
    settings = load_experiment_settings(experiment)
    service = LocalPredictionService(edge_file, threads)
    model_name = experiment.run_info().get("model_name") or settings.model_name
    specs = {"model_dir": str(experiment.root), "model_name": model_name, "edge": str(service.path)}
    client = EdgeClient(settings, service, model_name, specs, debug)
    stop = SignalSafeEvent()
    try:
        with signal_handlers(lambda signum, frame: stop.set()):
            report = client.stream(count, interval, stop)
    except ClientError as error:
        sys.stdout.flush()
        print_problems(str(error))
        return 1
    where = f"{service.path} ({service.model.runtime}, on this machine)"
    if not report.requests:
        print(f"no request sent to {where}")
        return 0
    requests = f"{report.requests} request{'s' if report.requests != 1 else ''}"
    print(f"{requests} answered by {where}, converted from {model_name} version {service.version}; latency p50 "
          f"{report.percentile(0.5):.2f} ms, p99 {report.percentile(0.99):.2f} ms (each request through Client_IO, "
          "the first one's warm-up included; the parity report times the runtime alone)")
    return 0
