"""gRPC front end: TF Serving's PredictionService and ModelService.

Implemented on the servicer bases shipped by tensorflow-serving-api, so the
method names, messages and status codes are those TF Serving clients expect.
The synchronous grpc server is used on purpose: a worker thread calls the
model directly, which measured ~0.2 ms faster per request than grpc.aio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

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

if TYPE_CHECKING:
    from experiments_manager.serving.predictor import Predictor
    from experiments_manager.serving.servable import Servable
    from experiments_manager.serving.versions import VersionManager

SIGNATURE_DEF_FIELD = "signature_def"
VERSION_RECORD_FIELD = "version_record"  # ours: the epoch and monitored value the version holds (a Struct)
CLASS_NAMES_FIELD = "class_names"  # ours: the class names by class id, when the settings gave them (a ListValue)


DEFAULT_ANSWER_LIMIT = 64 << 20
"""The largest gRPC answer, unless the largest request is larger (`answer_limit`)."""


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

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext) -> bytes:
        try:
            spec = request.model_spec
            servable, key, specs = self.predictor.resolve(
                spec.name, _version(spec), spec.version_label, spec.signature_name
            )
            arrays = tensor_protos.arrays_from_protos(request.inputs, specs)
            rows = {array.shape[0] if array.ndim else 1 for array in arrays.values()}
            least = servable.answer_bytes_at_least(key, max(rows, default=0), tuple(request.output_filter))
            if least > self.max_answer_bytes:  # refused before the work
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, self._too_big(least, max(rows, default=0)))
            outputs = self.predictor.run(servable, key, arrays, tuple(request.output_filter))
        except RequestError as error:
            context.abort(error.code, error.message)
        model_spec = model_pb2.ModelSpec()
        _fill_spec(model_spec, servable, key)
        answer = tensor_protos.predict_response_bytes(model_spec, outputs)  # serialized: `_serializer` passes it on
        if len(answer) > self.max_answer_bytes:  # outputs whose size only the work told
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, self._too_big(len(answer), max(rows, default=0)))
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
                                                                  predictor),
                                                        response_serializer=_serializer(response))
            for method, (request, response) in methods.items()
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))


def _serializer(response_type: Any) -> Callable[[Any], bytes]:
    """The response's serialization; bytes (a `PredictResponse` serialized by `predict_response_bytes`) as they are."""
    def serialize(response: Any) -> bytes:
        return response if isinstance(response, bytes) else response_type.SerializeToString(response)

    return serialize


def _decoding(method: Callable[[Any, Any], Any], request_type: Any,
              predictor: Predictor) -> Callable[[bytes, Any], Any]:
    """`method` on the decoded request, counted in flight, a big one holding its share of the request budget
    (`RequestBudget`)."""
    def handle(raw: bytes, context: Any) -> Any:
        with predictor.answering():
            return decoded(raw, context)

    def decoded(raw: bytes, context: Any) -> Any:
        try:
            request = request_type.FromString(raw)
        except DecodeError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"undecodable {request_type.__name__}: {error}")
        try:
            with predictor.budget.share(len(raw)):
                return method(request, context)
        except RequestError as error:  # no share in time: UNAVAILABLE, retry later
            context.abort(error.code, error.message)

    return handle

