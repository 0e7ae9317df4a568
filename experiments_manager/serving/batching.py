"""Server-side batching: concurrent requests to one signature merged into one model call.

Requests are queued; a worker takes the first, waits up to `timeout_seconds`
for more (never past `max_batch_size` rows), concatenates inputs along the
first axis, calls the model once and hands each request its slice. Requests
whose non-batch shapes differ from the batch being formed wait for the next one.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    Arrays = dict[str, NDArray[Any]]  # input or output name -> array, batch first
    _Item = tuple[Arrays, concurrent.futures.Future[Arrays]]  # a request and where its outputs go

_STOP = object()


class Batcher:
    """Merges concurrent calls of `run(arrays) -> outputs` into batched calls.

    Args:
        run: function from dict name -> ndarray (batch first) to dict name -> ndarray.
        max_batch_size: most rows in one merged call.
        timeout_seconds: longest wait for more requests after the first one.
        name: thread name, for logs and debuggers.

    Example:

    ```python
    batcher = Batcher(lambda arrays: {"y": arrays["x"] * 2}, max_batch_size=32, timeout_seconds=0.001)
    future = batcher.submit({"x": np.ones((1, 3))})
    future.result()["y"]
    batcher.close()
    ```
    """

    def __init__(self, run: Callable[[Arrays], Arrays], max_batch_size: int = 32, timeout_seconds: float = 0.001,
                 name: str = "batcher") -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.timeout_seconds = timeout_seconds
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()  # `_Item`s, then `_STOP`
        self._worker = threading.Thread(target=self._loop, name=name, daemon=True)
        self._worker.start()

    def submit(self, arrays: Arrays) -> concurrent.futures.Future[Arrays]:
        """Queues one request; returns a `concurrent.futures.Future` of its outputs."""
        future: concurrent.futures.Future[Arrays] = concurrent.futures.Future()
        self._queue.put((arrays, future))
        return future

    def close(self) -> None:
        self._queue.put(_STOP)
        self._worker.join()

    def _loop(self) -> None:
        carried: Any = None  # an `_Item` or `_STOP` that did not fit the last batch
        while True:
            first = carried if carried is not None else self._queue.get()
            carried = None
            if first is _STOP:
                return
            batch, carried = self._gather(first)
            self._execute(batch)
            if carried is _STOP:
                self._execute_pending()
                return

    def _gather(self, first: _Item) -> tuple[list[_Item], Any]:
        batch, rows = [first], _rows(first[0])
        deadline = time.monotonic() + self.timeout_seconds
        while rows < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP or not _compatible(first[0], item[0]) or rows + _rows(item[0]) > self.max_batch_size:
                return batch, item
            batch.append(item)
            rows += _rows(item[0])
        return batch, None

    def _execute_pending(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._execute([item])

    def _execute(self, batch: list[_Item]) -> None:
        live = [(arrays, future) for arrays, future in batch if future.set_running_or_notify_cancel()]
        if not live:
            return
        if len(live) == 1:
            _resolve(live[0][1], self._run, live[0][0])
            return
        sizes = [_rows(arrays) for arrays, _ in live]
        merged = {name: np.concatenate([arrays[name] for arrays, _ in live]) for name in live[0][0]}
        try:
            outputs = self._run(merged)
        except Exception as error:
            for _, future in live:
                future.set_exception(error)
            return
        total = sum(sizes)
        if any(np.ndim(value) == 0 or value.shape[0] != total for value in outputs.values()):
            for arrays, future in live:  # outputs not batch-major: the model cannot be batched
                _resolve(future, self._run, arrays)
            return
        offsets = np.cumsum([0] + sizes)
        for (_, future), start, stop in zip(live, offsets[:-1], offsets[1:]):
            future.set_result({name: value[start:stop] for name, value in outputs.items()})


def _resolve(future: concurrent.futures.Future[Arrays], run: Callable[[Arrays], Arrays], arrays: Arrays) -> None:
    try:
        future.set_result(run(arrays))
    except Exception as error:
        future.set_exception(error)


def _rows(arrays: Arrays) -> int:
    first = next(iter(arrays.values()))
    return first.shape[0] if first.ndim else 1


def _compatible(left: Arrays, right: Arrays) -> bool:
    if left.keys() != right.keys():
        return False
    return all(
        left[name].ndim > 0
        and right[name].ndim == left[name].ndim
        and left[name].shape[1:] == right[name].shape[1:]
        and left[name].dtype == right[name].dtype
        for name in left
    )
