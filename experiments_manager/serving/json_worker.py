"""Big REST bodies parsed, and big answers encoded, in a worker process: one big request does not hold the server.

Python's `json` and the list <-> ndarray conversions hold the GIL, so a thread does not help: one valid
10^6-row request (11 MiB of JSON) kept every other client of the server waiting up to ~2 s
(`tools/bench_serving.py --big-request`). A body over `BIG_BODY_BYTES` is parsed in a worker process, which also
turns its numeric payloads into ndarrays (only an ndarray comes back, not millions of Python objects); an answer
of more than `BIG_ANSWER_VALUES` values is encoded there. Smaller ones stay in this process, where a hand-off
would cost more than it saves.

The worker is started on the first big request by a forkserver (never a fork of a process running TensorFlow),
serves one request and exits (`max_tasks_per_child=1`), so the memory a big request took is returned at once.
"""

import asyncio
import concurrent.futures
import json
import multiprocessing

import grpc
import numpy as np

from experiments_manager.serving import tensors
from experiments_manager.serving.errors import RequestError

BIG_BODY_BYTES = 1 << 20
BIG_ANSWER_VALUES = 100_000


def parse_json(raw):
    """The JSON object of a request body (NaN and Infinity accepted, as TF Serving does); RequestError if malformed."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(f"malformed JSON request body: {error}") from None
    except RecursionError:
        raise RequestError("malformed JSON request body: nested too deep") from None


def parse_big_body(raw):
    """In the worker: `parse_json`, with `instances` / `inputs` turned into ndarrays where they are numeric.

    The server checks them against the signature as it checks lists (`tensors.rest_inputs` calls `np.asarray`
    on either), so the answer, and any error, is the same as for a small body.
    """
    body = parse_json(raw)
    if isinstance(body, dict):
        if "instances" in body:
            body["instances"] = _rows_as_arrays(body["instances"])
        if isinstance(body.get("inputs"), dict):
            body["inputs"] = {name: _numeric(value) for name, value in body["inputs"].items()}
        elif "inputs" in body:
            body["inputs"] = _numeric(body["inputs"])
    return body


def encode_answer(outputs, row_format):
    """In the worker: the JSON bytes answering a predict (`tensors.rest_outputs`)."""
    return json.dumps(tensors.rest_outputs(outputs, row_format)).encode()


def _rows_as_arrays(instances):
    if isinstance(instances, list) and instances and all(isinstance(row, dict) for row in instances):
        names = instances[0].keys()
        if names and not tensors.is_b64(instances[0]) and all(row.keys() == names for row in instances):
            return tensors.NamedRows({name: _numeric([row[name] for row in instances]) for name in names})
        return instances  # mixed or b64 rows: checked in the server, with its message
    return _numeric(instances)


def _numeric(value):
    if not isinstance(value, list) or not value:
        return value
    try:
        array = np.asarray(value)
    except ValueError:
        return value  # ragged: refused in the server, with its message
    return array if array.dtype.kind in "biuf" else value


class JsonWorker:
    """Runs `parse_big_body` and `encode_answer` in a worker process, from the REST event loop.

    Example:

    ```python
    worker = JsonWorker()
    body = await worker.parse(raw)              # raw: a big request body
    answer = await worker.encode(outputs, True)  # JSON bytes
    worker.close()
    ```
    """

    def __init__(self):
        self._pool = None

    async def parse(self, raw):
        return await self._run(parse_big_body, raw)

    async def encode(self, outputs, row_format):
        return await self._run(encode_answer, outputs, row_format)

    async def _run(self, function, *arguments):
        if self._pool is None:  # only the event loop's thread gets here
            self._pool = concurrent.futures.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("forkserver"), max_tasks_per_child=1)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function, *arguments)
        except concurrent.futures.process.BrokenProcessPool:
            self._pool = None
            raise RequestError("the request's decoding worker died (out of memory?); send a smaller request",
                               grpc.StatusCode.RESOURCE_EXHAUSTED) from None

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
