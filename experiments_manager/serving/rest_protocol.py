"""uvicorn's HTTP/1.1 protocol with a deadline on each request: a client may not hold a connection open with a
partial request, or with nothing at all.

uvicorn closes idle keep-alive connections between requests (`timeout_keep_alive`) but sets no timer while a
request's headers or body are on their way, nor on a new connection that sends nothing: one client could hold a
connection (and its buffers) forever. Here a request must arrive whole within `REQUEST_SECONDS` of its first byte
(or of the connection's start); otherwise the client gets `408 Request Timeout` (a connection that sent nothing is
just closed) and the connection is closed.
"""

import json
from typing import TYPE_CHECKING, Optional

from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    import asyncio

REQUEST_SECONDS = 30.0


class DeadlineH11Protocol(H11Protocol):
    """`H11Protocol` closing a connection whose request is not whole `request_seconds` after it started.

    Example:

    ```python
    uvicorn.Config(app, http=DeadlineH11Protocol.with_deadline(10.0))
    ```
    """

    request_seconds = REQUEST_SECONDS

    @classmethod
    def with_deadline(cls, seconds: float) -> "type[DeadlineH11Protocol]":
        """This protocol with another deadline (uvicorn takes a class)."""
        return type(cls.__name__, (cls,), {"request_seconds": float(seconds)})

    def connection_made(self, transport: "asyncio.Transport") -> None:  # type: ignore[override]  # as H11Protocol's
        super().connection_made(transport)
        self._deadline: "Optional[asyncio.TimerHandle]" = None
        self._started = False  # has a request begun (bytes received since the last response)?
        self._arm()  # a connection that never sends a byte is held no longer than a slow request

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first bytes of the next request on a kept-alive connection
        self._started = True
        super().data_received(data)
        if self.cycle is not None and not self.cycle.more_body and not self.cycle.response_complete:
            self._disarm()  # the request is whole: the model's time is not the client's

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.request_seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        answering = self.cycle is None or self.cycle.response_complete or not self.cycle.response_started
        if self._started and answering:  # a connection opened ahead (a proxy's, a browser's) is closed quietly
            body = json.dumps({"error": f"request not received whole within {self.request_seconds:g} s: "
                                        "the connection is closed"}).encode()
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        self.transport.close()
