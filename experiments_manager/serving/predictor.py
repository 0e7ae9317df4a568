"""The one place requests meet models: lookup, input checks, optional batching, big requests in slices.

REST and gRPC front ends both decode their wire format to arrays and call
`Predictor.run` (gRPC worker threads) or `Predictor.run_async` (the REST event
loop), so both answer identically and refuse the same inputs. Both take a share
of `Predictor.budget` for a big request.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING, Any, Iterator, Optional, cast

import numpy as np

from experiments_manager.serving.batching import Batcher
from experiments_manager.run.served_layout import is_path_trick
from experiments_manager.serving.errors import RequestError
from experiments_manager.serving.request_budget import RequestBudget

if TYPE_CHECKING:
    import concurrent.futures

    from experiments_manager.serving.batching import Arrays
    from experiments_manager.serving.options import BatchingOptions
    from experiments_manager.serving.servable import Servable
    from experiments_manager.serving.versions import VersionManager

SLICE_BYTES = 4 << 20  # inputs of one model call at most, beside `max_rows_per_call`


class Predictor:
    """Answers predict requests from the versions a `VersionManager` serves.

    Args:
        versions: the `VersionManager`.
        executor: where REST model calls run when they are not batched.
        batching: `BatchingOptions`, or None to call the model once per request.
        budget: the `RequestBudget` big requests share (default: 256 MiB).
        max_rows_per_call: a request of more rows, or of more than `SLICE_BYTES` of inputs, goes through the
            model in slices (default 8192): its activations never take more than one slice's.

    Example:

    ```python
    predictor = Predictor(versions, ThreadPoolExecutor(16), BatchingOptions(max_batch_size=64))
    servable, key, specs = predictor.resolve("model_curve_fitting", None, None, "")
    outputs = predictor.run(servable, key, {"input": x})  # or: await predictor.run_async(...)
    ```
    """

    def __init__(self, versions: VersionManager, executor: concurrent.futures.Executor,
                 batching: Optional[BatchingOptions] = None, budget: Optional[RequestBudget] = None,
                 max_rows_per_call: int = 8192) -> None:
        self.versions = versions
        self.executor = executor
        self.batching = batching
        self.budget = budget if budget is not None else RequestBudget(256 << 20)
        self.max_rows_per_call = max_rows_per_call
        self._batchers: dict[tuple[int, str], Batcher] = {}  # (id(servable), signature key) -> Batcher
        self._lock = threading.Lock()
        self._in_flight = 0

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Counts a request (either front end) as in flight until its answer is made (`in_flight`)."""
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        """The requests being worked on now: after the server stopped, those its grace did not wait for."""
        return self._in_flight

    @staticmethod
    def check_name(name: str) -> None:
        if is_path_trick(name):
            raise RequestError(f"model name: expected a name without '/' or '..', got {name!r}")

    def servable(self, name: str, version: Optional[int] = None, label: Optional[str] = None) -> Servable:
        self.check_name(name)
        return self.versions.lookup(name, version, label)

    def resolve(self, name: str, version: Optional[int], label: Optional[str],
                signature_name: str) -> tuple[Servable, str, dict[str, Any]]:
        """(servable, signature key, input specs) for a request."""
        servable = self.servable(name, version, label)
        key = servable.signature_key(signature_name)
        return servable, key, servable.input_specs[key]

    def run(self, servable: Servable, key: str, arrays: Arrays, output_filter: tuple[str, ...] = ()) -> Arrays:
        """Checks shapes and runs the signature in this thread (gRPC workers). Returns dict name -> ndarray."""
        batcher = self._checked(servable, key, arrays, output_filter)
        if batcher is None:
            return self._call(servable, key, arrays, output_filter)
        return batcher.submit(arrays).result()

    async def run_async(self, servable: Servable, key: str, arrays: Arrays,
                        output_filter: tuple[str, ...] = ()) -> Arrays:
        """`run` for the event loop (REST): the model call happens in the executor or the batcher."""
        batcher = self._checked(servable, key, arrays, output_filter)
        if batcher is None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, self._call, servable, key, arrays, output_filter)
        return await asyncio.wrap_future(batcher.submit(arrays))

    def _checked(self, servable: Servable, key: str, arrays: Arrays,
                 output_filter: tuple[str, ...]) -> Optional[Batcher]:
        """Checks input shapes; returns the Batcher to use, or None to call the model directly."""
        servable.check_inputs(key, arrays)
        return None if self.batching is None or output_filter else self._batcher(servable, key)

    def _batcher(self, servable: Servable, key: str) -> Optional[Batcher]:
        assert self.batching is not None  # `_checked` asks only with batching on
        with self._lock:
            if servable.retired:
                return None  # unloaded while this request was in flight: answer it directly
            batcher = self._batchers.get((id(servable), key))
            if batcher is None:
                batcher = self._batchers[(id(servable), key)] = Batcher(
                    lambda arrays: self._call(servable, key, arrays),
                    self.batching.max_batch_size,
                    self.batching.batch_timeout_micros / 1e6,
                    name=f"batcher-{servable.name}-{servable.version}-{key}",
                )
            return batcher

    def _call(self, servable: Servable, key: str, arrays: Arrays, output_filter: tuple[str, ...] = ()) -> Arrays:
        """`servable.call`; a request of more rows than a slice, in slices whose outputs are put together (unless
        the outputs are not batch-major: then the model needs the request whole)."""
        sizes = {array.shape[0] if array.ndim else None for array in arrays.values()}
        rows = sizes.pop() if len(sizes) == 1 else None
        row_bytes = sum(array[:1].nbytes for array in arrays.values()) if rows else 0
        step = max(1, min(self.max_rows_per_call, SLICE_BYTES // max(row_bytes, 1)))
        if rows is None or rows <= step:
            return servable.call(key, arrays, output_filter)
        outputs: Optional[dict[str, Any]] = None
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            part = servable.call(key, {name: array[start:stop] for name, array in arrays.items()}, output_filter)
            if outputs is None:
                outputs = {name: np.empty((rows, *value.shape[1:]), value.dtype) if value.ndim else None
                           for name, value in part.items()}
            if any(outputs[name] is None or value.shape != (stop - start, *outputs[name].shape[1:])
                   for name, value in part.items()):
                return servable.call(key, arrays, output_filter)
            for name, value in part.items():
                outputs[name][start:stop] = value
        return cast("Arrays", outputs)  # filled: `rows > step`, so the loop ran

    def release(self, servable: Servable) -> None:
        """Stops the batchers of a servable taken out of service (after their queued requests)."""
        with self._lock:
            servable.retired = True
            retiring = [self._batchers.pop(batch_key) for batch_key in list(self._batchers) if batch_key[0] == id(servable)]
        for batcher in retiring:
            batcher.close()

    def close(self) -> None:
        with self._lock:
            retiring, self._batchers = list(self._batchers.values()), {}
        for batcher in retiring:
            batcher.close()
