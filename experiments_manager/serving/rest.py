"""REST front end: TF Serving's `/v1/models/...` API as an ASGI application (served by uvicorn).

Routes (TF Serving's documented REST API):
    GET  /v1/models/{name}[/versions/{v} | /labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v} | /labels/{l}]/metadata   signature defs (and the version's record and
                                                                   class names, ours)
    POST /v1/models/{name}[/versions/{v} | /labels/{l}]:predict    row or columnar predict
and one TF Serving lacks:
    GET  /v1/models                                                the model list: `{"models": [{"name", "base_path",
                                                                   "versions": [ints], "state"[, "error"]}]}`, by
                                                                   name (`VersionManager.models`)
Errors are `{"error": "..."}` with 400, 404, 405 or 413.
"""

import asyncio
import json
import logging
import re
import urllib.parse
from typing import Awaitable, Callable

import grpc
from google.protobuf import json_format

from experiments_manager.serving import json_worker, tensors
from experiments_manager.serving.errors import RequestError
from experiments_manager.serving.grpc_service import CLASS_NAMES_FIELD, SIGNATURE_DEF_FIELD, VERSION_RECORD_FIELD
from experiments_manager.serving.model_status import status_response

_LOG = logging.getLogger(__name__)
_VERSION = re.compile(r"[0-9]{1,19}")
_MAX_VERSION = 2**63 - 1  # an int64, as TF Serving's versions
_MODEL_LIST = "/v1/models"
_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/]+?)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<action>:[A-Za-z]+|/metadata)?$"
)


class RestApp:
    """ASGI app answering TF Serving REST requests through a `Predictor`.

    Args:
        predictor: the shared `Predictor`.
        max_request_bytes: larger bodies are refused with 413.

    Example:

    ```python
    app = RestApp(predictor, max_request_bytes=64 << 20)
    uvicorn.Server(uvicorn.Config(app, port=8501)).run()
    ```
    """

    def __init__(self, predictor, max_request_bytes):
        self.predictor = predictor
        self.max_request_bytes = max_request_bytes
        self.json_worker = json_worker.JsonWorker()  # big bodies and answers, off this process' GIL

    def close(self):
        """Stops the JSON worker process, if one runs."""
        self.json_worker.close()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            status, answer = await self._answer(scope, receive)
        except RequestError as error:
            status, answer = error.http_status, {"error": error.message}
        except MemoryError:  # a request the memory left cannot hold: the client's to make smaller
            status, answer = 413, {"error": "request too big for the server's memory; send a smaller one"}
        except Exception as error:  # a bug or a model crash: logged with its traceback, the server stays up
            _LOG.exception("REST %s %s failed", scope.get("method"), scope.get("path"))
            status, answer = 500, {"error": f"internal error: {type(error).__name__}: {error}"}
        await _send_json(send, status, answer)

    async def _answer(self, scope: dict, receive: "Callable[[], Awaitable[dict]]") -> "tuple[int, object]":
        path = scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
        if path.rstrip("/") == _MODEL_LIST:
            _require_method(scope["method"], "GET")
            return 200, {"models": self.predictor.versions.models()}
        route = _ROUTE.match(path)
        if route is None:
            raise RequestError(f"unknown path {scope['path']!r}; expected /v1/models/NAME[...]", grpc.StatusCode.NOT_FOUND)
        name = urllib.parse.unquote(route["name"])  # never empty: the pattern needs one character
        version, label, action = (
            urllib.parse.unquote(route[part]) if route[part] else None for part in ("version", "label", "action")
        )
        number = None
        if version is not None:
            if not _VERSION.fullmatch(version) or int(version) > _MAX_VERSION:  # str.isdigit() also takes '²', '٣'
                raise RequestError(f"version: expected a version number (an int64, digits 0-9), got {version[:40]!r}")
            number = int(version)
        method = scope["method"]
        if action is None:
            _require_method(method, "GET")
            return 200, self._status(name, number, label)
        if action == "/metadata":
            _require_method(method, "GET")
            return 200, self._metadata(name, number, label)
        if action == ":predict":
            _require_method(method, "POST")
            body = await self._read_json(scope, receive)
            return 200, await self._predict(name, number, label, body)
        raise RequestError(f"{action}: only :predict is served (not :classify or :regress)")

    def _status(self, name, version, label):
        self.predictor.check_name(name)
        if label:
            version = self.predictor.servable(name, label=label).version
        return json_format.MessageToDict(
            status_response(self.predictor.versions, name, version),
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )

    def _metadata(self, name: str, version: "int | None", label: "str | None") -> dict:
        servable = self.predictor.servable(name, version, label)
        signatures = {
            key: json_format.MessageToDict(signature, preserving_proto_field_name=True)
            for key, signature in servable.signature_defs.items()
        }
        metadata = {SIGNATURE_DEF_FIELD: {SIGNATURE_DEF_FIELD: signatures}}
        if servable.record is not None:  # the epoch and monitored value the version holds
            metadata[VERSION_RECORD_FIELD] = servable.record
        if servable.class_names is not None:  # the settings' class_names when the version was exported
            metadata[CLASS_NAMES_FIELD] = servable.class_names
        return {
            "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
            "metadata": metadata,
        }

    async def _predict(self, name, version, label, body):
        servable, key, specs = self.predictor.resolve(name, version, label, body.get("signature_name", ""))
        # in a thread, so the event loop serves other clients (a big body was parsed by the JSON worker)
        arrays, row_format = await asyncio.to_thread(tensors.rest_inputs, body, specs)
        outputs = await self.predictor.run_async(servable, key, arrays)
        if sum(array.size for array in outputs.values()) > json_worker.BIG_ANSWER_VALUES:
            return await self.json_worker.encode(outputs, row_format)
        return await asyncio.to_thread(tensors.rest_outputs, outputs, row_format)

    async def _read_json(self, scope, receive):
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_request_bytes:
            raise _too_large(self.max_request_bytes)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError("client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_request_bytes:
                raise _too_large(self.max_request_bytes)
            chunks.append(chunk)
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        if len(raw) > json_worker.BIG_BODY_BYTES:
            body = await self.json_worker.parse(raw)
        else:
            body = await asyncio.to_thread(json_worker.parse_json, raw)
        if not isinstance(body, dict):
            raise RequestError('request body: expected a JSON object with "instances" or "inputs"')
        if not isinstance(body.get("signature_name", ""), str):
            raise RequestError('"signature_name": expected a string')
        return body


def _require_method(method, expected):
    if method != expected:
        raise RequestError(f"method {method} not allowed here; use {expected}", grpc.StatusCode.UNIMPLEMENTED, 405)


def _too_large(limit):
    return RequestError(
        f"request body larger than --max-request-bytes ({limit} bytes)", grpc.StatusCode.RESOURCE_EXHAUSTED
    )


async def _send_json(send, status, answer):
    """Sends `answer`: a JSON-able object, or JSON bytes already encoded (by the JSON worker)."""
    body = answer if isinstance(answer, bytes) else (await asyncio.to_thread(json.dumps, answer)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
