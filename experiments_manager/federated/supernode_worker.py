"""A SuperNode's persistent worker: TensorFlow imported once, a client's model built once per run.

Flower 1.41 starts a new `flwr-clientapp` process for every message. In a deployed federation that process runs
the thin ClientApp of `apps.worker_client_app`, which imports neither TensorFlow nor the model: it hands the
message's arrays and config to this worker over a Unix socket in the SuperNode's private folder (mode 0700) and
answers Flower with what the worker returns. The worker trains with the same `FederatedClient` as a simulation,
and keeps it (model, optimizer, inputs) from one round of a run to the next. `keeper.py` starts it with the
SuperNode, starts it again when it dies, and stops it with the SuperNode.

The protocol (frames, limits, the ClientApp's side) is in `worker_protocol.py`. The worker writes its status
(`worker.json`: its pid, when it imported TensorFlow, the request in progress, the last requests served) next to
its socket.

Run as `python -m experiments_manager.federated.supernode_worker FOLDER KEEPER_PID` (the keeper does).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union, cast

from experiments_manager.federated.worker_protocol import (MAX_MESSAGE_BYTES, STATUS_NAME, WorkerError,
                                                           receive_frame, send_frame, socket_path)

if TYPE_CHECKING:
    from types import FrameType

    from numpy.typing import NDArray

    from experiments_manager.federated.federated_client import FederatedClient
    from experiments_manager.utils.atomic import PathLike

_LOG = logging.getLogger("experiments_manager.federated.supernode_worker")  # also when run as __main__
_SERVED_KEPT = 100  # requests listed in the status file
IDLE_SECONDS = 60.0  # longest wait for a ClientApp's next bytes (or for it to take the reply): then it is dropped


class Worker:
    """Serves the ClientApp requests of one SuperNode, one at a time, on `<folder>/worker.sock`.

    The socket is bound before TensorFlow is imported: a ClientApp that comes early waits in the backlog. The
    client of a run (settings, model, inputs, optimizer) is built at its first request and kept for the next
    ones (unless its inputs do not restart: `FederatedClient.keep_across_rounds`); a request of another run
    replaces it, and a request that fails drops it (the next one restores the client from its checkpoint, as a
    fresh process would). A stop signal (SIGTERM, SIGINT) ends the worker at
    once when idle, else after the request in progress (training checkpoints at the next step and stops).

    Args:
        folder: the SuperNode's private worker folder.
        max_bytes: largest request or reply (bytes of arrays).

    Example:

    ```python
    Worker(folder).serve()   # until a stop signal
    ```
    """

    def __init__(self, folder: PathLike, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.client: Optional[FederatedClient] = None
        self.client_key: Optional[str] = None
        self.busy = False
        self.stop_signal: Optional[int] = None
        self.status: dict[str, Any] = {"pid": os.getpid(), "started": time.time(), "tensorflow_imported": None,
                                       "busy": None, "served": []}

    def serve(self) -> None:
        from experiments_manager.utils.signals import signal_handlers

        path = socket_path(self.folder)
        path.unlink(missing_ok=True)  # a dead predecessor's
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(path))
            listener.listen(16)
            with signal_handlers(self._on_signal):
                self._write_status()
                self._import_tensorflow()
                while self.stop_signal is None:
                    connection, _ = listener.accept()
                    with connection:
                        self._serve_one(connection)
        except SystemExit:
            pass
        finally:
            listener.close()
            self._drop_client()

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        self.stop_signal = signum
        if not self.busy:
            raise SystemExit(128 + signum)

    def _import_tensorflow(self) -> None:
        from experiments_manager.utils.native_noise import import_tensorflow_quietly

        import_tensorflow_quietly()
        import keras  # noqa: F401  (what the first round would import)

        from experiments_manager.federated.federated_client import FederatedClient  # noqa: F401
        from experiments_manager.training import Trainer  # noqa: F401

        self.status["tensorflow_imported"] = time.time()
        self._write_status()
        _LOG.info("Federated worker %d ready (TensorFlow imported) on %s", os.getpid(), socket_path(self.folder))

    def _serve_one(self, connection: socket.socket) -> None:
        self.busy = True
        started = time.monotonic()
        header, answered = None, False
        try:
            connection.settimeout(IDLE_SECONDS)  # a ClientApp that stalls must not hold the worker
            received = receive_frame(connection, self.max_bytes)
            if received is None:
                return
            if not isinstance(received[0].get("config", {}), dict):
                raise WorkerError("the request's config is not a JSON object")
            header, arrays = received
            self.status["busy"] = {"kind": header.get("kind"), "round": header.get("config", {}).get("server-round"),
                                   "run_id": header.get("run_id"), "since": time.time()}
            self._write_status()
            reply_arrays: list[NDArray[Any]]
            try:
                reply, reply_arrays = self._answer(header, arrays), []
                if isinstance(reply, tuple):
                    reply, reply_arrays = reply
                self._note_training_signal()
            except Exception as error:  # the client's failure is the ClientApp's answer to Flower
                _LOG.exception("Federated worker: %s request failed", header.get("kind"))
                self._note_training_signal()
                self._drop_client()
                reply, reply_arrays = {"error": f"{type(error).__name__}: {error}"}, []
            try:
                send_frame(connection, reply, reply_arrays, self.max_bytes)
            except WorkerError as error:  # the reply is over the limit: the error goes instead
                reply = {"error": str(error)}
                send_frame(connection, reply)
            answered = "error" not in reply  # and sent: a reply that could not be sent raised above
        except (WorkerError, OSError, ValueError, TypeError, KeyError) as error:
            _LOG.warning("Federated worker: request dropped: %s", error)
        finally:
            self.busy = False
            self._record(header, started, answered)

    def _note_training_signal(self) -> None:
        """A stop signal that came during `fit` went to the trainer (it checkpointed and stopped): stop after it."""
        session = getattr(self.client, "session", None)
        received = session.plan.stop_on_signal.received if session is not None else None
        if received is not None:
            self.stop_signal = received

    def _answer(self, header: dict[str, Any], arrays: list[NDArray[Any]]
                ) -> Union[dict[str, Any], tuple[dict[str, Any], list[NDArray[Any]]]]:
        from experiments_manager.federated.federated_client import PROXIMAL_MU_KEY, ROUNDS_KEY

        kind = header.get("kind")
        if kind not in ("train", "evaluate"):
            raise WorkerError(f"unknown request kind {kind!r} (expected 'train' or 'evaluate')")
        client = self._client_for(header)
        client.start_message()
        if kind == "evaluate":
            return {"metrics": client.evaluate(arrays)}
        config = header.get("config", {})
        weights, metrics = client.train_round(arrays, float(config.get(PROXIMAL_MU_KEY, 0.0)),
                                              config.get("server-round"), config.get(ROUNDS_KEY))
        return {"metrics": metrics}, weights

    def _client_for(self, header: dict[str, Any]) -> FederatedClient:
        from experiments_manager.federated.federated_client import FederatedClient, node_partition
        from experiments_manager.federated.job import FederatedJob

        key = json.dumps([header.get("run_id"), header.get("run_config"), header.get("app_dir"),
                          header.get("node_config")], sort_keys=True)
        # a generator's client: built anew
        if key != self.client_key or not cast("FederatedClient", self.client).keep_across_rounds:
            self._drop_client()
            job = FederatedJob.from_run_config(header.get("run_config", {}), header.get("app_dir"))
            self.client = FederatedClient(job, node_partition(header.get("node_config", {})))
            self.client_key = key
        return cast("FederatedClient", self.client)  # built above, or kept with its key

    def _drop_client(self) -> None:
        client, self.client, self.client_key = self.client, None, None
        if client is not None:
            try:
                client.close()
            except Exception as error:  # noqa: BLE001  (a broken client must not take the worker down)
                _LOG.warning("Federated worker: closing the client failed: %s", error)

    def _record(self, header: Optional[dict[str, Any]], started: float, answered: bool) -> None:
        if header is not None:
            fit = ((self.client.last_round or {}).get("fit_seconds") if self.client and header.get("kind") == "train"
                   else None)
            self.status["served"] = self.status["served"][-(_SERVED_KEPT - 1):] + [{
                "kind": header.get("kind"), "round": header.get("config", {}).get("server-round"),
                "run_id": header.get("run_id"), "clientapp": header.get("clientapp"),
                "answered": answered, "seconds": round(time.monotonic() - started, 3), "fit_seconds": fit}]
        self.status["busy"] = None
        self._write_status()

    def _write_status(self) -> None:
        from experiments_manager.utils.atomic import replaced_atomically

        try:
            with replaced_atomically(self.folder / STATUS_NAME) as temporary:
                temporary.write_text(json.dumps(self.status))
        except OSError as error:  # the folder went with the SuperNode: the keeper stops this worker
            _LOG.warning("Federated worker: status not written: %s", error)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m experiments_manager.federated.supernode_worker FOLDER KEEPER_PID`: serves until stopped or orphaned."""
    from experiments_manager.utils.logging_setup import configure_logging
    from experiments_manager.utils.signals import stop_when_orphaned

    folder, keeper_pid = (argv if argv is not None else sys.argv[1:])[:2]
    configure_logging()
    stop_when_orphaned(int(keeper_pid), f"the keeper {keeper_pid} of this federated worker")
    Worker(folder).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
