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
Errors are `{"error": "..."}` with 400, 404, 405, 413, or 503 (with Retry-After) when big requests already take
the server's `--request-memory-budget`.

A big body's numbers are decoded straight into arrays (`json_numbers`), the model runs on them in slices
(`Predictor`), and the answer is encoded and sent in pieces (`tensors.rest_answer`): the server's memory grows by
a small multiple of the request, and each step holds the GIL briefly, so the other clients are answered meanwhile.
"""

import asyncio
import contextlib
import json
import logging
import re
import urllib.parse
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator, cast

import grpc
from google.protobuf import json_format

from experiments_manager.serving import json_numbers, tensors
from experiments_manager.serving.errors import RequestError
from experiments_manager.serving.grpc_service import CLASS_NAMES_FIELD, SIGNATURE_DEF_FIELD, VERSION_RECORD_FIELD
from experiments_manager.serving.model_status import status_response
from experiments_manager.serving.request_budget import BIG_REQUEST_BYTES

if TYPE_CHECKING:
    from experiments_manager.serving.batching import Arrays
    from experiments_manager.serving.predictor import Predictor

    Receive = Callable[[], Awaitable[dict[str, Any]]]  # ASGI's receive(): the next message
    Send = Callable[[dict[str, Any]], Awaitable[None]]  # ASGI's send(message)
    Answer = dict[str, Any] | bytes | Iterator[bytes]  # JSON-able, JSON bytes, or JSON pieces (`_send_json`)

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
    app = RestApp(predictor, max_request_bytes=64 << 20)  # predictor.budget: the big requests' memory
    uvicorn.Server(uvicorn.Config(app, port=8501)).run()
    ```
    """

    def __init__(self, predictor: "Predictor", max_request_bytes: int) -> None:
        self.predictor = predictor
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: "dict[str, Any]", receive: "Receive", send: "Send") -> None:
        if scope["type"] != "http":
            return
        with self.predictor.answering():
            await self._respond(scope, receive, send)

    async def _respond(self, scope: "dict[str, Any]", receive: "Receive", send: "Send") -> None:
        async with contextlib.AsyncExitStack() as shares:  # a big request's share of the budget, until answered
            status, answer = await self._answer_or_error(scope, receive, shares)
            await _send_json(send, status, answer)

    async def _answer_or_error(self, scope: "dict[str, Any]", receive: "Receive",
                               shares: contextlib.AsyncExitStack) -> "tuple[int, Answer]":
        try:
            return await self._answer(scope, receive, shares)
        except RequestError as error:
            return error.http_status, {"error": error.message}
        except MemoryError:  # a request the memory left cannot hold: the client's to make smaller
            return 413, {"error": "request too big for the server's memory; send a smaller one"}
        except Exception as error:  # a bug or a model crash: logged with its traceback, the server stays up
            _LOG.exception("REST %s %s failed", scope.get("method"), scope.get("path"))
            return 500, {"error": f"internal error: {type(error).__name__}: {error}"}

    async def _answer(self, scope: "dict[str, Any]", receive: "Receive",
                      shares: contextlib.AsyncExitStack) -> "tuple[int, Answer]":
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
            return 200, await self._predict(name, number, label, scope, receive, shares)
        raise RequestError(f"{action}: only :predict is served (not :classify or :regress)")

    def _status(self, name: str, version: "int | None", label: "str | None") -> "dict[str, Any]":
        self.predictor.check_name(name)
        if label:
            version = self.predictor.servable(name, label=label).version
        return cast("dict[str, Any]", json_format.MessageToDict(
            status_response(self.predictor.versions, name, version),
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        ))

    def _metadata(self, name: str, version: "int | None", label: "str | None") -> "dict[str, Any]":
        servable = self.predictor.servable(name, version, label)
        signatures = {
            key: json_format.MessageToDict(signature, preserving_proto_field_name=True)
            for key, signature in servable.signature_defs.items()
        }
        metadata: "dict[str, Any]" = {SIGNATURE_DEF_FIELD: {SIGNATURE_DEF_FIELD: signatures}}
        if servable.record is not None:  # the epoch and monitored value the version holds
            metadata[VERSION_RECORD_FIELD] = servable.record
        if servable.class_names is not None:  # the settings' class_names when the version was exported
            metadata[CLASS_NAMES_FIELD] = servable.class_names
        return {
            "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
            "metadata": metadata,
        }

    async def _predict(self, name: str, version: "int | None", label: "str | None", scope: "dict[str, Any]",
                       receive: "Receive", shares: contextlib.AsyncExitStack) -> "bytes | Iterator[bytes]":
        """The answer's pieces. Each step runs in a thread, so the event loop serves other clients meanwhile; the
        body's text and arrays are let go as soon as the next step has what it needs (so they are read here, not
        passed in: a caller's argument lives as long as the call)."""
        raw: "bytearray | None"  # let go below
        raw = await self._read_body(scope, receive, shares)
        body = await asyncio.to_thread(json_numbers.parse_body, raw)
        raw = None  # the NumericTexts keep it until decoded
        if not isinstance(body, dict):
            raise RequestError('request body: expected a JSON object with "instances" or "inputs"')
        if not isinstance(body.get("signature_name", ""), str):
            raise RequestError('"signature_name": expected a string')
        servable, key, specs = self.predictor.resolve(name, version, label, body.get("signature_name", ""))
        arrays: "Arrays | None"  # let go below
        arrays, row_format = await asyncio.to_thread(tensors.rest_inputs, body, specs)
        body = None
        outputs = await self.predictor.run_async(servable, key, cast("Arrays", arrays))  # just set
        arrays = None
        return await asyncio.to_thread(_encoded, outputs, row_format)

    async def _read_body(self, scope: "dict[str, Any]", receive: "Receive",
                         shares: contextlib.AsyncExitStack) -> bytearray:
        """The body, read into one buffer; a big one waits for its share of the request budget first (a body of
        unknown length takes the largest accepted request's share once it is past `BIG_REQUEST_BYTES`)."""
        declared = dict(scope["headers"]).get(b"content-length")
        declared = int(declared) if declared is not None and declared.isdigit() else None
        if declared is not None and declared > self.max_request_bytes:
            raise _too_large(self.max_request_bytes)
        if declared is not None:
            await shares.enter_async_context(self.predictor.budget.share_async(declared))
        raw, more, shared = bytearray(), True, declared is not None
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError("client disconnected before sending the whole body")
            raw += message.get("body", b"")
            if len(raw) > self.max_request_bytes:
                raise _too_large(self.max_request_bytes)
            if not shared and len(raw) > BIG_REQUEST_BYTES:
                await shares.enter_async_context(self.predictor.budget.share_async(self.max_request_bytes))
                shared = True
            more = message.get("more_body", False)
        return raw


def _require_method(method: str, expected: str) -> None:
    if method != expected:
        raise RequestError(f"method {method} not allowed here; use {expected}", grpc.StatusCode.UNIMPLEMENTED, 405)


def _too_large(limit: int) -> RequestError:
    return RequestError(
        f"request body larger than --max-request-bytes ({limit} bytes)", grpc.StatusCode.RESOURCE_EXHAUSTED
    )


def _encoded(outputs: "Arrays", row_format: bool) -> "bytes | Iterator[bytes]":
    """A predict's answer: its JSON bytes, or for a big one (over `tensors.ANSWER_VALUES` values) the iterator of
    its pieces, made as they are sent."""
    pieces = tensors.rest_answer(outputs, row_format)
    return b"".join(pieces) if sum(array.size for array in outputs.values()) <= tensors.ANSWER_VALUES else pieces


async def _send_json(send: "Send", status: int, answer: "Answer") -> None:
    """Sends `answer`: a JSON-able object, JSON bytes, or an iterator of JSON pieces (`_encoded`: each sent as it
    is made, with chunked transfer encoding); a 503 (the request budget taken) says when to retry."""
    if isinstance(answer, dict):
        answer = (await asyncio.to_thread(json.dumps, answer)).encode()
    piece: "bytes | None"
    following: "bytes | None"
    if isinstance(answer, bytes):
        piece, following = answer, None
    else:
        piece, following = await asyncio.to_thread(next, answer, None), await asyncio.to_thread(next, answer, None)
    headers = [(b"content-type", b"application/json")]
    if following is None:
        headers.append((b"content-length", str(len(cast(bytes, piece))).encode()))  # an answer has a first piece
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    while piece is not None:
        await send({"type": "http.response.body", "body": piece, "more_body": following is not None})
        piece, following = following, (None if following is None else await asyncio.to_thread(
            next, cast("Iterator[bytes]", answer), None))  # pieces follow only an iterator's first
