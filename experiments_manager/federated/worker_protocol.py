"""The protocol between a deployed federation's ClientApp and its SuperNode's persistent worker (`supernode_worker.py`).

One request and one reply per connection, over the Unix socket `<worker folder>/worker.sock`. A frame is
`MAGIC`, the JSON header's length (uint32) and the body's length (uint64), the header, then the body: the
arrays' bytes one after the other, as the header's `arrays` list of {"dtype", "shape"} says (numbers only: no
pickle). A request's header holds `kind` ('train' or 'evaluate'), `run_id`, `run_config`, `app_dir`,
`node_config`, `config` (the message's config record) and `clientapp` (the asking process: its pid, and whether
it has TensorFlow loaded); a reply's holds `metrics`, or `error`. A frame over `max_bytes` of arrays (or a header
over `MAX_HEADER_BYTES`) is refused before it is sent, and on receipt, with a `WorkerError` saying so.

Importing this module imports neither TensorFlow nor Flower (only numpy).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Sequence, cast, overload

import numpy as np

from experiments_manager.utils.command_name import command_name

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from experiments_manager.utils.atomic import PathLike

_LOG = logging.getLogger(__name__)
FOLDER_VARIABLE = "EXPERIMENTS_MANAGER_SUPERNODE_WORKER"  # set by `federated supernode` for its ClientApps
SOCKET_NAME = "worker.sock"
STATUS_NAME = "worker.json"
MAGIC = b"EMW1"
_PREFIX = struct.Struct("!4sIQ")
MAX_HEADER_BYTES = 1 << 20
MAX_MESSAGE_BYTES = 1 << 32  # 4 GiB of arrays: a model of 1e9 float32 parameters
CONNECT_SECONDS = 120.0  # how long a ClientApp waits for a worker that is (re)starting
_FIRST_READ_BYTES = 1 << 20  # a frame's buffer starts at this size and doubles as its bytes arrive


class WorkerError(Exception):
    """The worker did not answer with weights: absent, died in the round, refused the message, or the client failed."""


def socket_path(folder: PathLike) -> Path:
    return Path(folder) / SOCKET_NAME


def read_status(folder: PathLike) -> Optional[dict[str, Any]]:
    """The worker's status file: pid, when TensorFlow was imported, the request in progress, the last requests."""
    try:
        return cast("dict[str, Any]", json.loads((Path(folder) / STATUS_NAME).read_text()))
    except (OSError, ValueError):
        return None



# --- frames -----------------------------------------------------------------------------------------------------

def send_frame(connection: socket.socket, header: dict[str, Any], arrays: Sequence[NDArray[Any]] = (),
               max_bytes: int = MAX_MESSAGE_BYTES) -> None:
    """Sends `header` (a JSON-able dict) and `arrays` (numpy arrays) as one frame.

    Raises:
        WorkerError: the arrays are over `max_bytes` (nothing is sent).
    """
    arrays = [np.ascontiguousarray(array) for array in arrays]
    for array in arrays:
        if array.dtype.kind not in "biufc":
            raise WorkerError(f"federated worker: array of dtype {array.dtype} cannot be sent (numbers only)")
    size = sum(array.nbytes for array in arrays)
    if size > max_bytes:
        raise WorkerError(f"federated worker: a message of {size} bytes of arrays is over the limit of "
                          f"{max_bytes} bytes")
    encoded = json.dumps({**header, "arrays": [{"dtype": array.dtype.str, "shape": list(array.shape)}
                                               for array in arrays]}).encode()
    if len(encoded) > MAX_HEADER_BYTES:
        raise WorkerError(f"federated worker: a header of {len(encoded)} bytes is over the limit of "
                          f"{MAX_HEADER_BYTES} bytes")
    connection.sendall(_PREFIX.pack(MAGIC, len(encoded), size) + encoded)
    for array in arrays:
        if array.nbytes:
            # numpy declares ndarray a Buffer for Python >= 3.12 only
            connection.sendall(memoryview(array.reshape(-1)).cast("B"))  # type: ignore[arg-type]


def receive_frame(connection: socket.socket,
                  max_bytes: int = MAX_MESSAGE_BYTES) -> Optional[tuple[dict[str, Any], list[NDArray[Any]]]]:
    """Reads one frame; returns (header, arrays), or None when the peer closed the connection before sending one.

    Raises:
        WorkerError: not a frame of this protocol, over the limits, or cut short.
    """
    prefix = _read_exactly(connection, _PREFIX.size, allow_eof=True)
    if prefix is None:
        return None
    magic, header_size, body_size = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise WorkerError(f"federated worker: not a worker frame (starts with {bytes(magic)!r})")
    if header_size > MAX_HEADER_BYTES or body_size > max_bytes:
        raise WorkerError(f"federated worker: a frame of {header_size} + {body_size} bytes is over the limits of "
                          f"{MAX_HEADER_BYTES} + {max_bytes} bytes")
    header = json.loads(bytes(_read_exactly(connection, header_size)))
    if not isinstance(header, dict) or not isinstance(header.get("arrays", []), list):
        raise WorkerError("federated worker: the frame's header is not a JSON object with a list of arrays")
    body = _read_exactly(connection, body_size)
    arrays, offset = [], 0
    for description in header.pop("arrays", []):
        dtype = np.dtype(description["dtype"])
        shape = tuple(int(length) for length in description["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        if dtype.kind not in "biufc" or min(shape, default=0) < 0 or offset + count * dtype.itemsize > body_size:
            raise WorkerError("federated worker: the frame's arrays do not match its body")
        arrays.append(np.frombuffer(body, dtype, count, offset).reshape(shape))
        offset += count * dtype.itemsize
    if offset != body_size:
        raise WorkerError("federated worker: the frame's arrays do not match its body")
    return header, arrays


@overload
def _read_exactly(connection: socket.socket, size: int, allow_eof: Literal[False] = False) -> bytearray: ...


@overload
def _read_exactly(connection: socket.socket, size: int, allow_eof: bool) -> Optional[bytearray]: ...


def _read_exactly(connection: socket.socket, size: int, allow_eof: bool = False) -> Optional[bytearray]:
    """Reads `size` bytes; the buffer grows with what arrived (at most twice it), not with what the prefix claims."""
    buffer, done = bytearray(min(size, _FIRST_READ_BYTES)), 0
    while done < size:
        if done == len(buffer):
            buffer.extend(bytes(min(size, 2 * len(buffer)) - len(buffer)))
        with memoryview(buffer) as view:
            received = connection.recv_into(view[done:])
        if received == 0:
            if allow_eof and done == 0:
                return None
            raise WorkerError(f"federated worker: connection closed after {done} of {size} bytes")
        done += received
    return buffer


# --- the ClientApp's side ---------------------------------------------------------------------------------------

def ask_worker(folder: PathLike, request: dict[str, Any], arrays: Sequence[NDArray[Any]],
               connect_seconds: float = CONNECT_SECONDS,
               max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[list[NDArray[Any]], dict[str, Any]]:
    """Sends one request to the worker of `folder` and waits for its answer; returns (arrays, metrics).

    A worker that is starting (or starting again after a crash) is waited for up to `connect_seconds`.

    Args:
        folder: the SuperNode's worker folder (`FOLDER_VARIABLE`).
        request: the header: kind, run_id, run_config, app_dir, node_config, config (see the module docstring).
        arrays: the message's arrays (numpy).
        connect_seconds: longest wait for the worker to accept the connection.
        max_bytes: largest request or reply (bytes of arrays).

    Raises:
        WorkerError: no worker, the worker died before answering, or the client's round failed (its error).

    Example:

    ```python
    weights, metrics = ask_worker(folder, {"kind": "train", "run_id": 1, "run_config": run_config,
                                           "app_dir": str(app_dir), "node_config": node_config, "config": {}},
                                  arrays)
    ```
    """
    request = {**request, "clientapp": {"pid": os.getpid(), "tensorflow": "tensorflow" in sys.modules}}
    with _connect(socket_path(folder), connect_seconds) as connection:
        try:
            send_frame(connection, request, arrays, max_bytes)
            reply = receive_frame(connection, max_bytes)
        except OSError as error:
            reply = None
            _LOG.warning("federated worker connection: %s", error)
    if reply is None:
        raise WorkerError("the SuperNode's federated worker closed the connection before answering (it died in "
                          "this round; its keeper starts it again for the next one)")
    header, arrays = reply
    if "error" in header:
        raise WorkerError(header["error"])
    return arrays, header.get("metrics", {})


def _connect(path: Path, connect_seconds: float) -> socket.socket:
    deadline = time.monotonic() + connect_seconds
    while True:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(str(path))
            return connection
        except (FileNotFoundError, ConnectionRefusedError) as error:
            connection.close()
            if time.monotonic() > deadline:
                raise WorkerError(f"no federated worker answers at {path} after {connect_seconds:g} s ({error}): "
                                  "this SuperNode's worker is gone (it and its keeper died, or it cannot start "
                                  f"again); restart the SuperNode (`{command_name()} federated supernode`)") from None
            time.sleep(0.1)
