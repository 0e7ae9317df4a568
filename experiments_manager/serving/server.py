"""The embedded model server: gRPC and REST front ends over hot-reloaded versions.

Example:

```python
from experiments_manager.serving.config import source_from_experiment
from experiments_manager.serving.server import ModelServer, ServerOptions

with ModelServer([source_from_experiment("exp")], ServerOptions(grpc_port=0, rest_port=0)) as server:
    print(server.grpc_address, server.rest_url)
```
"""

import asyncio
import concurrent.futures
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from experiments_manager.utils.errors import UserInputError
from experiments_manager.serving.options import ServerOptions
from experiments_manager.serving.predictor import Predictor
from experiments_manager.serving.request_budget import RequestBudget
from experiments_manager.serving.versions import VersionManager

STOP_GRACE_SECONDS = 2.0

if TYPE_CHECKING:
    import uvicorn

    from experiments_manager.run.served_layout import ModelSource
    from experiments_manager.serving.servable import Servable


class ModelServer:
    """Serves model sources over gRPC and REST until stopped.

    gRPC requests run in the grpc server's worker threads; REST runs on its own
    asyncio event loop in a background thread (uvicorn), its model calls in a
    thread pool or a batcher so the loop only moves bytes. Versions are polled
    in their own thread.

    Args:
        sources: the `ModelSource`s to serve.
        options: `ServerOptions`.
    """

    def __init__(self, sources: "list[ModelSource]", options: ServerOptions = ServerOptions()) -> None:
        self.sources = sources
        self.options = options
        self.versions = VersionManager(sources, options.poll_seconds, on_unload=self._release)
        self._executor = concurrent.futures.ThreadPoolExecutor(options.threads, thread_name_prefix="model-call")
        self.predictor = Predictor(self.versions, self._executor, options.batching,
                                   RequestBudget(options.request_memory_budget), options.max_rows_per_call)
        self.grpc_port: Optional[int] = None
        self.rest_port: Optional[int] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[threading.Thread] = None
        self._grpc_server: Any = None  # a grpc.Server
        self._rest_server: "Optional[uvicorn.Server]" = None
        self._rest_task: "Optional[concurrent.futures.Future[None]]" = None

    def __repr__(self) -> str:
        names = ", ".join(source.name for source in self.sources)
        if self.grpc_port is None:
            return f"<ModelServer {names}: not started>"
        rest = f", REST {self.rest_url}" if self.rest_url else ""
        return f"<ModelServer {names}: gRPC {self.grpc_address}{rest}>"

    def replace_sources(self, sources: "list[ModelSource]") -> None:
        """Serves `sources` from now on, without a restart: models that went away are unloaded (their requests get
        NOT_FOUND), new ones loaded before this returns (`VersionManager.replace_sources`).

        Args:
            sources: the `ModelSource`s to serve (names unique).

        Example:

        ```python
        server.replace_sources([*server.sources, source_from_experiment("exp2")])
        ```
        """
        sources = list(sources)
        self.versions.replace_sources(sources)
        self.sources = sources

    def _release(self, servable: "Servable") -> None:
        self.predictor.release(servable)

    @property
    def grpc_address(self) -> str:
        return f"{_bracketed(self.options.host)}:{self.grpc_port}"

    @property
    def rest_url(self) -> Optional[str]:
        return f"http://{_bracketed(self.options.host)}:{self.rest_port}" if self.rest_port else None

    def start(self) -> "ModelServer":
        """Binds both ports (a busy port is a clear error), loads versions, starts answering.

        On failure, whatever had started is stopped again before the error propagates.
        """
        from experiments_manager.utils.freed_memory import map_big_blocks

        map_big_blocks()  # a big request's arrays go back to the system once freed (`utils/freed_memory.py`)
        rest_socket = None
        if self.options.rest_port is not None:
            rest_socket = _bind(self.options.host, self.options.rest_port, "--rest-port")
        try:
            self._start_grpc()
            self.versions.start()
            if rest_socket is not None:
                self._start_rest(rest_socket)
        except BaseException:
            if rest_socket is not None:
                rest_socket.close()
            self.stop(grace_seconds=0)
            raise
        return self

    def _start_grpc(self) -> None:
        import grpc

        from experiments_manager.serving.grpc_service import add_services, answer_limit

        limit = self.options.max_request_bytes
        server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(self.options.threads, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", answer_limit(limit)),
                ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
                # a connection is closed after 5 idle minutes, and at most 30 min + 1 min grace after it opened,
                # so no client holds one forever with a request it never finishes (clients reconnect on their own)
                ("grpc.max_connection_idle_ms", 5 * 60_000),
                ("grpc.max_connection_age_ms", 30 * 60_000),
                ("grpc.max_connection_age_grace_ms", 60_000),
            ],
        )
        add_services(server, self.predictor, self.versions, answer_limit(limit))
        try:
            port = server.add_insecure_port(f"{_bracketed(self.options.host)}:{self.options.grpc_port}")
        except RuntimeError:
            port = 0
        if not port:
            raise UserInputError(f"--grpc-port: cannot listen on {self.options.host}:{self.options.grpc_port} (in use?)")
        server.start()
        self.grpc_port, self._grpc_server = port, server

    def _start_rest(self, rest_socket: socket.socket) -> None:
        import uvicorn

        from experiments_manager.serving.rest import RestApp
        from experiments_manager.serving.rest_protocol import DeadlineH11Protocol

        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="rest-loop", daemon=True)
        self._loop_thread.start()
        app = RestApp(self.predictor, self.options.max_request_bytes)
        # ws="none": a websocket upgrade is an ordinary request (answered 404), not a 500 from an unhandled scope
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="off",
                                ws="none", http=DeadlineH11Protocol.with_deadline(self.options.request_seconds),
                                limit_concurrency=self.options.max_connections)
        self._rest_server = uvicorn.Server(config)
        self.rest_port = rest_socket.getsockname()[1]
        self._rest_task = asyncio.run_coroutine_threadsafe(self._rest_server.serve(sockets=[rest_socket]), self._loop)
        deadline = time.monotonic() + 30
        while not self._rest_server.started and not self._rest_task.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._rest_task.done():
            self._rest_task.result()  # raises why uvicorn could not start

    def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """Stops accepting, lets requests in flight finish (up to the grace, REST's up to 5 s more to be sent),
        unloads models. A request still being worked on after that gets no answer (`predictor.in_flight` counts
        them: `serve` then exits without waiting for their threads)."""
        if self._rest_task is not None and not self._rest_task.done():
            assert self._rest_server is not None  # set before the task that serves it
            self._rest_server.should_exit = True
            try:
                self._rest_task.result(grace_seconds + 5)
            except concurrent.futures.TimeoutError:
                self._rest_server.force_exit = True
        if self._grpc_server is not None:
            self._grpc_server.stop(grace_seconds).wait()
        self._stop_loop()
        self.versions.stop()
        self.predictor.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _stop_loop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            assert self._loop_thread is not None  # started with the loop
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(10)

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _bind(host: str, port: int, flag: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP: asyncio then sets TCP_NODELAY on accepted connections (else +40 ms per answer)
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise UserInputError(f"{flag}: cannot listen on {host}:{port}: {error.strerror}") from None
    listener.listen(1024)
    listener.setblocking(False)
    return listener


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
