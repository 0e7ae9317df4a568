"""gRPC front end: TF Serving's PredictionService and ModelService.

Implemented on the servicer bases shipped by tensorflow-serving-api, so the
method names, messages and status codes are those TF Serving clients expect.
The synchronous grpc server is used on purpose: a worker thread calls the
model directly, which measured ~0.2 ms faster per request than grpc.aio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import grpc
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from experiments_manager.serving import tensor_protos
from experiments_manager.serving.errors import RequestError
from experiments_manager.serving.model_status import status_response
from experiments_manager.utils.freed_memory import return_freed_memory

if TYPE_CHECKING:
    from experiments_manager.serving.predictor import Predictor
    from experiments_manager.serving.servable import Servable
    from experiments_manager.serving.versions import VersionManager

SIGNATURE_DEF_FIELD = "signature_def"
VERSION_RECORD_FIELD = "version_record"  # ours: the epoch and monitored value the version holds (a Struct)
CLASS_NAMES_FIELD = "class_names"  # ours: the class names by class id, when the settings gave them (a ListValue)


TRIM_AFTER_BYTES = 8 << 20  # a request this big gives back the memory it arrived in once decoded (freed_memory)
DEFAULT_ANSWER_LIMIT = 64 << 20
"""The largest gRPC answer, unless the largest request is larger (`answer_limit`)."""


class HandedOver:
    """A request (its bytes, then its message) held for one taker: `take` leaves nothing behind, so the request is
    freed as soon as its taker lets go of it. gRPC keeps the argument it passes a handler until the answer is sent:
    what it keeps is this emptied holder, not a second copy of a big request beside its arrays and the answer.

    Args:
        value: what is held (default None).

    Example:

    ```python
    held = HandedOver(raw)
    request = predict_pb2.PredictRequest.FromString(held.take())   # `held` no longer holds the bytes
    ```
    """

    def __init__(self, value: Any = None) -> None:
        self._value = value

    def take(self) -> Any:
        """What is held, once: the holder is empty afterwards."""
        value, self._value = self._value, None
        return value


def answer_limit(max_request_bytes: int) -> int:
    """The largest answer the gRPC front end sends: the largest request it takes, at least 64 MiB."""
    return max(max_request_bytes, DEFAULT_ANSWER_LIMIT)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`Predict` and `GetModelMetadata` over a `Predictor`.

    Args:
        predictor: the shared `Predictor`.
        max_answer_bytes: the largest answer gRPC sends (`answer_limit`; default 64 MiB): a request whose answer
            would be larger is refused before the model runs when its outputs' shapes say so, else once computed,
            with INVALID_ARGUMENT naming the limit (not gRPC's own RESOURCE_EXHAUSTED after the work).
    """

    def __init__(self, predictor: Predictor, max_answer_bytes: int = DEFAULT_ANSWER_LIMIT) -> None:
        self.predictor = predictor
        self.max_answer_bytes = max_answer_bytes

    def Predict(self, request: Union[predict_pb2.PredictRequest, HandedOver],
                context: grpc.ServicerContext) -> bytes:
        """TF Serving's Predict. A request `HandedOver` (the server's way) is freed once its inputs are read, the
        inputs once the model ran, the outputs once the answer holds them: a big request's copies are not all
        alive at once (the bytes, the message, the arrays, the outputs, the answer and gRPC's copy of it)."""
        message = request.take() if isinstance(request, HandedOver) else request
        try:
            servable, key, specs = self.predictor.resolve(message.model_spec.name, _version(message.model_spec),
                                                          message.model_spec.version_label,
                                                          message.model_spec.signature_name)
            arrays = tensor_protos.arrays_from_protos(message.inputs, specs)
            output_filter = tuple(message.output_filter)
            del message  # (the arrays hold copies of its values)
            rows = max((array.shape[0] if array.ndim else 1 for array in arrays.values()), default=0)
            least = servable.answer_bytes_at_least(key, rows, output_filter)
            if least > self.max_answer_bytes:  # refused before the work
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, self._too_big(least, rows))
            outputs = self.predictor.run(servable, key, arrays, output_filter)
            del arrays
        except RequestError as error:
            context.abort(error.code, error.message)
        model_spec = model_pb2.ModelSpec()
        _fill_spec(model_spec, servable, key)
        answer = tensor_protos.predict_response_bytes(model_spec, outputs)  # serialized: `_serializer` passes it on
        del outputs
        if len(answer) > self.max_answer_bytes:  # outputs whose size only the work told
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, self._too_big(len(answer), rows))
        return answer

    def _too_big(self, size: int, rows: int) -> str:
        """The refusal of an answer of `size` bytes for `rows` rows: the limit, and how to stay under it."""
        fitting = max(1, rows * self.max_answer_bytes // max(size, 1))
        return (f"answer: expected at most {self.max_answer_bytes} bytes (the server's gRPC answer limit), got "
                f"{size} for {rows} rows: send at most {fitting} rows per request, name fewer outputs "
                "(output_filter), or use REST (no answer limit); `serve --max-request-bytes` raises it")

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                         context: grpc.ServicerContext) -> get_model_metadata_pb2.GetModelMetadataResponse:
        try:
            fields = (SIGNATURE_DEF_FIELD, VERSION_RECORD_FIELD, CLASS_NAMES_FIELD)
            unsupported = [field for field in request.metadata_field if field not in fields]
            if unsupported or not request.metadata_field:
                raise RequestError(f"metadata_field: expected some of {list(fields)}, got {list(request.metadata_field)}")
            spec = request.model_spec
            servable = self.predictor.servable(spec.name, _version(spec), spec.version_label)
        except RequestError as error:
            context.abort(error.code, error.message)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        _fill_spec(response.model_spec, servable, "")
        if SIGNATURE_DEF_FIELD in request.metadata_field:
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for name, signature in servable.signature_defs.items():
                signature_map.signature_def[name].CopyFrom(signature)
            response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        if VERSION_RECORD_FIELD in request.metadata_field and servable.record is not None:
            from google.protobuf import struct_pb2

            record = struct_pb2.Struct()
            record.update(servable.record)
            response.metadata[VERSION_RECORD_FIELD].Pack(record)
        if CLASS_NAMES_FIELD in request.metadata_field and servable.class_names is not None:
            from google.protobuf import struct_pb2

            names = struct_pb2.ListValue()
            names.extend(servable.class_names)
            response.metadata[CLASS_NAMES_FIELD].Pack(names)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """`GetModelStatus` over a `VersionManager` (config reloads are refused)."""

    def __init__(self, versions: VersionManager) -> None:
        self.versions = versions

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                       context: grpc.ServicerContext) -> get_model_status_pb2.GetModelStatusResponse:
        try:
            return status_response(self.versions, request.model_spec.name, _version(request.model_spec))
        except RequestError as error:
            context.abort(error.code, error.message)

    def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,
                                  context: grpc.ServicerContext) -> model_management_pb2.ReloadConfigResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "config reload: restart the server with the new --model_config_file")


def _version(spec: Any) -> Optional[int]:
    return spec.version.value if spec.HasField("version") else None


def _fill_spec(model_spec: Any, servable: Servable, signature_key: str) -> None:
    model_spec.name = servable.name
    model_spec.version.value = servable.version
    model_spec.signature_name = signature_key


_HANDED_OVER = frozenset({"Predict"})  # methods that take their request `HandedOver` (big requests)
# service -> method -> (request, response) messages: TF Serving's, as its generated `add_*_to_server` registers them
_METHODS = {
    "tensorflow.serving.PredictionService": {
        "Classify": (classification_pb2.ClassificationRequest, classification_pb2.ClassificationResponse),
        "Regress": (regression_pb2.RegressionRequest, regression_pb2.RegressionResponse),
        "Predict": (predict_pb2.PredictRequest, predict_pb2.PredictResponse),
        "MultiInference": (inference_pb2.MultiInferenceRequest, inference_pb2.MultiInferenceResponse),
        "GetModelMetadata": (get_model_metadata_pb2.GetModelMetadataRequest,
                             get_model_metadata_pb2.GetModelMetadataResponse),
    },
    "tensorflow.serving.ModelService": {
        "GetModelStatus": (get_model_status_pb2.GetModelStatusRequest, get_model_status_pb2.GetModelStatusResponse),
        "HandleReloadConfigRequest": (model_management_pb2.ReloadConfigRequest,
                                      model_management_pb2.ReloadConfigResponse),
    },
}


def add_services(server: Any, predictor: Predictor, versions: VersionManager,
                 max_answer_bytes: int = DEFAULT_ANSWER_LIMIT) -> None:
    """Registers TF Serving's services. Requests arrive as bytes and are decoded here, so undecodable bytes are
    the client's INVALID_ARGUMENT (grpc's own decoding would answer INTERNAL), and a big one waits for its share of
    `predictor.budget`. `max_answer_bytes`: the server's send limit (`answer_limit`)."""
    servicers = {"tensorflow.serving.PredictionService": PredictionService(predictor, max_answer_bytes),
                 "tensorflow.serving.ModelService": ModelService(versions)}
    for service, methods in _METHODS.items():
        handlers = {
            method: grpc.unary_unary_rpc_method_handler(_decoding(getattr(servicers[service], method), request,
                                                                  predictor, hands_over=method in _HANDED_OVER),
                                                        request_deserializer=HandedOver,
                                                        response_serializer=_serializer(response))
            for method, (request, response) in methods.items()
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))


def _serializer(response_type: Any) -> Callable[[Any], bytes]:
    """The response's serialization; bytes (a `PredictResponse` serialized by `predict_response_bytes`) as they are."""
    def serialize(response: Any) -> bytes:
        return response if isinstance(response, bytes) else response_type.SerializeToString(response)

    return serialize


def _decoding(method: Callable[[Any, Any], Any], request_type: Any, predictor: Predictor,
              hands_over: bool = False) -> Callable[[HandedOver, Any], Any]:
    """`method` on the decoded request, counted in flight, a big one holding its share of the request budget
    (`RequestBudget`). The request's bytes are freed once decoded; with `hands_over`, `method` takes the message
    `HandedOver` (and frees it when it is done with it)."""
    def handle(held: HandedOver, context: Any) -> Any:
        with predictor.answering():
            return decoded(held, context)

    def decoded(held: HandedOver, context: Any) -> Any:
        raw = held.take()
        size = len(raw)
        try:
            request = request_type.FromString(raw)
        except DecodeError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"undecodable {request_type.__name__}: {error}")
        del raw
        if size >= TRIM_AFTER_BYTES:  # what gRPC received it in, back to the system before the work
            return_freed_memory()
        argument = HandedOver(request) if hands_over else request
        del request
        try:
            with predictor.budget.share(size):
                return method(argument, context)
        except RequestError as error:  # no share in time: UNAVAILABLE, retry later
            context.abort(error.code, error.message)

    return handle

