"""The bytes of big requests the server works on at once, shared by its REST and gRPC front ends.

A request costs the server a small multiple of its size while it is read, decoded, run and answered
(`json_numbers`, `Predictor`'s slices); two or ten of the biggest at once would multiply that. Each request over
`BIG_REQUEST_BYTES` takes its size from the budget (`--request-memory-budget`) for that time, waiting its turn
(first come, first served) up to `wait_seconds`; then it is refused with 503 (REST, with Retry-After) or
UNAVAILABLE (gRPC), as TF Serving refuses work when its batch queue is full. Smaller requests never wait.
Once the last big request is answered, the memory the C allocator keeps free is handed back to the system
(`utils/freed_memory.py`), so a node's other tenants get it back.
"""

import asyncio
import collections
import contextlib
import threading
from typing import Any, AsyncIterator, Iterator, Optional

import grpc

from experiments_manager.serving.errors import RequestError
from experiments_manager.utils.freed_memory import return_freed_memory

BIG_REQUEST_BYTES = 1 << 20
WAIT_SECONDS = 10.0


class RequestBudget:
    """Bytes of big requests in progress, at most `capacity`; waiters served in arrival order.

    Args:
        capacity: the budget in bytes (at least the largest accepted request).
        wait_seconds: longest wait for a share before the request is refused (default 10).

    Example:

    ```python
    budget = RequestBudget(256 << 20)
    with budget.share(len(message)):          # a gRPC worker thread
        ...
    async with budget.share_async(length):    # the REST event loop
        ...
    ```
    """

    def __init__(self, capacity: int, wait_seconds: float = WAIT_SECONDS) -> None:
        self.capacity = capacity
        self.wait_seconds = wait_seconds
        self._lock = threading.Lock()
        self._free = capacity
        self._waiters: "collections.deque[list[Any]]" = collections.deque()  # [amount, wake(), granted]

    @contextlib.contextmanager
    def share(self, amount: int) -> Iterator[None]:
        """Holds `amount` bytes of the budget in this thread; RequestError (UNAVAILABLE) if not given in time."""
        if amount <= BIG_REQUEST_BYTES:
            yield
            return
        event = threading.Event()
        waiter = self._enter(amount, event.set)
        if waiter is not None and not event.wait(self.wait_seconds):
            self._leave(waiter)
        try:
            yield
        finally:
            self._release(amount)

    @contextlib.asynccontextmanager
    async def share_async(self, amount: int) -> AsyncIterator[None]:
        """`share` for the event loop."""
        if amount <= BIG_REQUEST_BYTES:
            yield
            return
        loop = asyncio.get_running_loop()
        granted = loop.create_future()
        waiter = self._enter(amount, lambda: loop.call_soon_threadsafe(_settle, granted))
        if waiter is not None:
            try:
                await asyncio.wait_for(asyncio.shield(granted), self.wait_seconds)
            except asyncio.TimeoutError:
                self._leave(waiter)
            except BaseException:  # cancelled while waiting
                if self._withdraw(waiter):
                    self._release(amount)
                raise
        try:
            yield
        finally:
            await asyncio.to_thread(self._release, amount)

    def _enter(self, amount: int, wake: Any) -> Optional[list[Any]]:
        """Takes `amount` now (None), or queues a waiter that `wake()` will call once it has it."""
        amount = min(amount, self.capacity)
        with self._lock:
            if not self._waiters and self._free >= amount:
                self._free -= amount
                return None
            waiter: list[Any] = [amount, wake, False]
            self._waiters.append(waiter)
            return waiter

    def _withdraw(self, waiter: list[Any]) -> bool:
        """Takes a waiter out of the queue; True if it had got its share meanwhile (then it holds it)."""
        with self._lock:
            if waiter[2]:
                return True
            self._waiters.remove(waiter)
            self._grant()  # a smaller request behind this one may fit now
            return False

    def _leave(self, waiter: list[Any]) -> None:
        """After a wait that ran out: keeps the share if it came meanwhile, else raises RequestError."""
        if self._withdraw(waiter):
            return
        raise RequestError(
            f"the server is busy with other big requests (--request-memory-budget {self.capacity} bytes, waited "
            f"{self.wait_seconds:g} s); retry later", grpc.StatusCode.UNAVAILABLE, 503)

    def _release(self, amount: int) -> None:
        with self._lock:
            self._free += min(amount, self.capacity)
            self._grant()
            idle = self._free == self.capacity
        if idle:  # the last big request is answered: what it took goes back to the system
            return_freed_memory()

    def _grant(self) -> None:
        while self._waiters and self._free >= self._waiters[0][0]:
            waiter = self._waiters.popleft()
            self._free -= waiter[0]
            waiter[2] = True
            waiter[1]()


def _settle(future: "asyncio.Future[None]") -> None:
    if not future.done():
        future.set_result(None)
