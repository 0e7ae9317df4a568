"""Errors a request can cause, with their gRPC code and HTTP status."""

from typing import Optional

import grpc

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.INTERNAL: 500,
}
MESSAGE_CHARACTERS = 1000  # a longer message (one quoting a client's 1 MB name) keeps its start and its end


class RequestError(Exception):
    """A request the server refuses: answered with a message, never fatal to the server.

    Args:
        message: one line saying what was wrong and what was expected (over `MESSAGE_CHARACTERS`: its middle cut).
        code: the `grpc.StatusCode` (REST maps it to 400, 404, 413, 500 or 503).
        http_status: the REST status when it is not the code's usual one.

    Example:

    ```python
    raise RequestError("Servable not found for request: Latest(mnist)", grpc.StatusCode.NOT_FOUND)
    ```
    """

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT,
                 http_status: Optional[int] = None) -> None:
        if len(message) > MESSAGE_CHARACTERS:
            message = f"{message[:MESSAGE_CHARACTERS * 2 // 3]} ... {message[-MESSAGE_CHARACTERS // 3:]}"
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status: int = http_status or _HTTP_STATUS.get(code, 400)


def not_found(message: str) -> RequestError:
    return RequestError(message, grpc.StatusCode.NOT_FOUND)
