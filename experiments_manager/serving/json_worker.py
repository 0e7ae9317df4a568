"""Big REST bodies parsed, and big answers encoded, in a worker process: one big request does not hold the server.

Python's `json` and the list <-> ndarray conversions hold the GIL, so a thread does not help: one valid
10^6-row request (11 MiB of JSON) kept every other client of the server waiting up to ~2 s
(`tools/bench_serving.py --big-request`). A body over `BIG_BODY_BYTES` is parsed in a worker process, which also
turns its numeric payloads into ndarrays (only ndarrays come back, not millions of Python objects); an answer of
more than `BIG_ANSWER_VALUES` values is encoded there. Smaller ones stay in this process, where a hand-off would
cost more than it saves. A big body whose payload is not numbers (strings, b64) is parsed in this process, as
before: it would come back as as many Python objects.

Each worker is a fresh `python -m experiments_manager.serving.json_worker` (no fork of a process running
TensorFlow, no re-run of the user's main script, as multiprocessing's spawn and forkserver would do), in its own
session (a terminal's Ctrl-C is the server's to handle), for one request: the memory it took is returned when it
exits. At most `max_workers` run at once; the server's stop kills those still running.
"""

import asyncio
import contextlib
import json
import pickle
import sys

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
    """In the worker: `parse_json`, with `instances` / `inputs` turned into ndarrays; None when they are not all
    numbers (the server then parses the body itself).

    The server checks the arrays against the signature as it checks lists (`tensors.rest_inputs` calls
    `np.asarray` on either), so the answer, and any error, is the same as for a small body.
    """
    body = parse_json(raw)
    if not isinstance(body, dict):
        return body
    payloads = {key: body[key] for key in ("instances", "inputs") if key in body}
    for key, value in payloads.items():
        if key == "instances":
            body[key] = _rows_as_arrays(value)
        elif isinstance(value, dict) and not tensors.is_b64(value):
            body[key] = {name: _numeric(column) for name, column in value.items()}
        else:
            body[key] = _numeric(value)
    converted = [body[key] for key in payloads]
    columns = [column for value in converted for column in (value.values() if isinstance(value, dict) else [value])]
    if not all(isinstance(column, np.ndarray) for column in columns):
        return None
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
    """An ndarray for a non-empty nested list of numbers (bools, ints, floats); else `value` unchanged."""
    if not isinstance(value, list) or not value or tensors.non_number_leaf(value) is not None:
        return value
    try:
        array = np.asarray(value)
    except ValueError:
        return value  # ragged: refused in the server, with its message
    return array if array.dtype.kind in "biuf" else value


def _work(task, argument):
    """What the worker process does with one request: ('ok', result) or ('error', RequestError)."""
    try:
        return "ok", parse_big_body(argument) if task == "parse" else encode_answer(*argument)
    except RequestError as error:
        return "error", error
    except MemoryError:
        return "error", RequestError("request too big for the server's memory", grpc.StatusCode.RESOURCE_EXHAUSTED)


class JsonWorker:
    """Runs `parse_big_body` and `encode_answer` in worker processes, from the REST event loop.

    Args:
        max_workers: big requests handled at once (default 2); more wait for a slot.

    Example:

    ```python
    worker = JsonWorker()
    body = await worker.parse(raw)              # raw: a big request body
    answer = await worker.encode(outputs, True)  # JSON bytes
    worker.close()
    ```
    """

    def __init__(self, max_workers=2):
        self.max_workers = max_workers
        self._slots = None
        self._running = set()

    async def parse(self, raw):
        body = await self._run("parse", raw)
        if body is None:  # not numbers: as many Python objects either way, parsed here
            body = await asyncio.to_thread(parse_json, raw)
        return body

    async def encode(self, outputs, row_format):
        return await self._run("encode", (outputs, row_format))

    async def _run(self, task, argument):
        if self._slots is None:  # made on the event loop, its only user
            self._slots = asyncio.Semaphore(self.max_workers)
        async with self._slots:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", __name__, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
            self._running.add(process)
            try:
                answer, _ = await process.communicate(pickle.dumps((task, argument), protocol=5))
            finally:
                self._running.discard(process)
        if process.returncode != 0 or not answer:
            raise RequestError(f"the request's decoding worker failed (exit code {process.returncode}: out of "
                               "memory?); send a smaller request", grpc.StatusCode.RESOURCE_EXHAUSTED)
        kind, value = pickle.loads(answer)
        if kind == "error":
            raise value
        return value

    def close(self):
        """Kills the worker processes still running (the server stops)."""
        for process in list(self._running):
            with contextlib.suppress(ProcessLookupError):
                process.kill()


def main():
    task, argument = pickle.load(sys.stdin.buffer)
    pickle.dump(_work(task, argument), sys.stdout.buffer, protocol=5)


if __name__ == "__main__":
    main()
