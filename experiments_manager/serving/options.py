"""The model server's options, defined once: the dataclasses the server takes, and the command line built from them.

Each option that has a flag carries it in its field's metadata (`flag(...)`): `add_server_arguments` makes the
argparse group of `serve` and `train --serve` from the fields (their defaults, types and help), `from_arguments`
turns the parsed flags back into the dataclasses, `check_arguments` says every bad value in one line each, and
`as_arguments` gives the flags that reproduce a set of options (what `train --serve` passes to the `serve` process
it starts). Standard library only: `--help` stays fast.

Example:

```python
parser = argparse.ArgumentParser()
add_server_arguments(parser)
options = from_arguments(parser.parse_args(["--enable_batching"]), grpc_port=8500)
options.batching   # BatchingOptions(max_batch_size=32, batch_timeout_micros=1000)
as_arguments(options)   # ['--host', '127.0.0.1', ..., '--enable_batching', '--max_batch_size', '32', ...]
```
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, Optional

from experiments_manager.run.served_layout import DEFAULT_GRPC_PORT, DEFAULT_REST_PORT
from experiments_manager.utils.errors import UserInputError


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one option appears on the command line.

    Args:
        names: the flag and its aliases, the first one used when flags are written back (`as_arguments`).
        help: the help text; `{default}` is replaced by the default as the command line shows it.
        metavar: the value's name in `--help`.
        per_unit: the flag's value divided by `per_unit` is the option's (default 1: the same unit; 1000 for a
            flag in milliseconds of an option in seconds).
        check: (predicate, expected) for `check_arguments` (default None: any value of the type).
    """

    names: tuple[str, ...]
    help: str
    metavar: str
    per_unit: int = 1
    check: Optional[tuple[Callable[[Any], bool], str]] = None


def flag(*names: str, help: str, metavar: str, per_unit: int = 1,
         check: Optional[tuple[Callable[[Any], bool], str]] = None) -> dict[str, Flag]:
    """A field's metadata naming its flag: `field(default=1.0, metadata=flag("--poll", help="...", metavar="S"))`."""
    return {"flag": Flag(names, help, metavar, per_unit, check)}


_PORT = (lambda port: 0 <= port <= 65535, "a port in 0..65535")
_POSITIVE = (lambda value: value > 0, "an int > 0")
_NOT_NEGATIVE = (lambda value: value >= 0, ">= 0")


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's batching knobs that matter for one process.

    Args:
        max_batch_size: most rows merged into one model call (default 32).
        batch_timeout_micros: longest wait for more requests once one is queued (default 1000).
    """

    max_batch_size: int = dataclasses.field(default=32, metadata=flag(
        "--max_batch_size", help="with batching: most rows per call ({default})", metavar="N", check=_POSITIVE))
    batch_timeout_micros: int = dataclasses.field(default=1000, metadata=flag(
        "--batch_timeout_micros", help="with batching: longest wait for more requests ({default})", metavar="US",
        check=_NOT_NEGATIVE))


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """How and where the server listens.

    Args:
        host: interface to bind (default 127.0.0.1: this machine only).
        grpc_port: gRPC port (default 8500, TF Serving's; 0: any free port).
        rest_port: REST port (default 8501; 0: any free port; None: no REST).
        poll_seconds: `file_system_poll_wait_seconds` (default 1).
        batching: `BatchingOptions`, or None (default: one model call per request).
        max_request_bytes: largest accepted request, REST body or gRPC message (default 64 MiB).
        threads: worker threads per front end (concurrent requests in flight; default 32).
        request_seconds: a REST request must arrive whole within this time of its first byte (or of the
            connection's start), else 408 and the connection is closed (default 30).
        max_connections: open REST connections at most; more are answered 503 (default 1000).
        request_memory_budget: bytes of big requests (over 1 MiB) worked on at once, REST and gRPC together;
            one that would pass it waits up to 10 s, then gets 503 / UNAVAILABLE (default 256 MiB; at least
            `max_request_bytes`).
        max_rows_per_call: a request of more rows, or more than 4 MiB of inputs, goes through the model in
            slices of at most this many rows, so the model's working memory stays bounded (default 8192).

    Example:

    ```python
    ModelServer([source_from_experiment("exp")], ServerOptions(grpc_port=0, rest_port=0))
    ```
    """

    host: str = dataclasses.field(default="127.0.0.1", metadata=flag(
        "--host", help="interface to listen on (default {default}: this machine only)", metavar="HOST"))
    grpc_port: int = dataclasses.field(default=DEFAULT_GRPC_PORT, metadata=flag(
        "--grpc-port", "--port", help="gRPC port (default: the settings' tensorflow_server_port, else {default}; "
                                      "0: any free port)", metavar="PORT", check=_PORT))
    rest_port: Optional[int] = dataclasses.field(default=DEFAULT_REST_PORT, metadata=flag(
        "--rest-port", "--rest_api_port", help="REST port (default {default}; 0: any free port)", metavar="PORT",
        check=_PORT))
    poll_seconds: float = dataclasses.field(default=1.0, metadata=flag(
        "--file_system_poll_wait_seconds", help="how often new versions are looked for (default {default})",
        metavar="SECONDS", check=_NOT_NEGATIVE))
    batching: Optional[BatchingOptions] = None
    max_request_bytes: int = dataclasses.field(default=64 << 20, metadata=flag(
        "--max-request-bytes", help="largest accepted request, REST body or gRPC message (default 64 MiB)",
        metavar="BYTES", check=_POSITIVE))
    threads: int = 32
    request_seconds: float = dataclasses.field(default=30.0, metadata=flag(
        "--rest_api_timeout_in_ms", per_unit=1000, check=_POSITIVE, metavar="MS",
        help="a REST request must arrive whole within this time, else 408 (default {default}; "
             "tensorflow_model_server, given the same flag, times the whole call)"))
    max_connections: int = 1000
    request_memory_budget: int = dataclasses.field(default=256 << 20, metadata=flag(
        "--request-memory-budget", metavar="BYTES", check=_POSITIVE,
        help="bytes of big requests (over 1 MiB) worked on at once, REST and gRPC together; one more waits up to "
             "10 s, then gets 503 / UNAVAILABLE (default 256 MiB; at least --max-request-bytes)"))
    max_rows_per_call: int = dataclasses.field(default=8192, metadata=flag(
        "--max-rows-per-call", metavar="ROWS", check=_POSITIVE,
        help="a request of more rows (or more than 4 MiB of inputs) goes through the model in slices of at most "
             "this many rows: the model's working memory stays bounded (default {default})"))


ENABLE_BATCHING = "--enable_batching"


def _flagged(options_class: type) -> list[tuple[dataclasses.Field[Any], Flag]]:
    return [(field, field.metadata["flag"]) for field in dataclasses.fields(options_class) if "flag" in field.metadata]


def _dest(field_flag: Flag) -> str:
    return field_flag.names[0].lstrip("-").replace("-", "_")


def _in_flag_unit(value: Any, field_flag: Flag) -> Any:
    """An option's value in its flag's unit (an int where the unit makes it whole: 30.0 s -> 30000 ms)."""
    if field_flag.per_unit == 1:
        return value
    converted = value * field_flag.per_unit
    return int(converted) if float(converted).is_integer() else converted


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The model server's flags, in a "server" group (`serve`, `train --serve`), made from the options' fields.

    `--grpc-port` defaults to None on the command line: the command then takes the experiment's recorded port.
    """
    group = parser.add_argument_group("server")
    for options_class in (ServerOptions, BatchingOptions):
        for field, field_flag in _flagged(options_class):
            default = _in_flag_unit(field.default, field_flag)
            kind = type(default) if default is not None else int
            shown = f"{default:g}" if isinstance(default, float) else default
            group.add_argument(*field_flag.names, dest=_dest(field_flag), type=kind,
                               default=None if field.name == "grpc_port" else default,
                               metavar=field_flag.metavar, help=field_flag.help.format(default=shown))
        if options_class is ServerOptions:
            group.add_argument(ENABLE_BATCHING, action="store_true",
                               help="merge concurrent requests into one model call")


def check_arguments(arguments: argparse.Namespace) -> None:
    """Every bad server flag, one line each (`serve`, and `train --serve` before it starts).

    Raises:
        UserInputError: the problems.
    """
    problems = []
    for options_class in (ServerOptions, BatchingOptions):
        for _, field_flag in _flagged(options_class):
            value = getattr(arguments, _dest(field_flag))
            if field_flag.check is not None and value is not None and not field_flag.check[0](value):
                shown = f"{value:g}" if isinstance(value, float) else value
                problems.append(f"{field_flag.names[0]}: expected {field_flag.check[1]}, got {shown}")
    budget, largest = arguments.request_memory_budget, arguments.max_request_bytes
    if not problems and budget < largest:
        problems.append(f"--request-memory-budget: expected at least --max-request-bytes ({largest}), got {budget}")
    if problems:
        raise UserInputError(problems)


def _values(options_class: type, arguments: argparse.Namespace) -> dict[str, Any]:
    values = {}
    for field, field_flag in _flagged(options_class):
        value = getattr(arguments, _dest(field_flag))
        if value is not None:
            values[field.name] = value / field_flag.per_unit if field_flag.per_unit != 1 else value
    return values


def from_arguments(arguments: argparse.Namespace, grpc_port: int) -> ServerOptions:
    """The options the parsed server flags give, with `grpc_port` (the flag's, else the experiment's recorded)."""
    batching = BatchingOptions(**_values(BatchingOptions, arguments)) if arguments.enable_batching else None
    return ServerOptions(**{**_values(ServerOptions, arguments), "grpc_port": grpc_port, "batching": batching})


def as_arguments(options: ServerOptions, grpc_port_given: bool = True) -> list[str]:
    """The flags that give back `options` from `add_server_arguments`' parser (`grpc_port_given=False` leaves
    `--grpc-port` out: the command then takes the experiment's recorded port)."""
    flags = _flags_of(options, skip=() if grpc_port_given else ("grpc_port",))
    if options.batching is not None:
        flags += [ENABLE_BATCHING, *_flags_of(options.batching)]
    return flags


def _flags_of(options: Any, skip: tuple[str, ...] = ()) -> list[str]:
    flags: list[str] = []
    for field, field_flag in _flagged(type(options)):
        value = getattr(options, field.name)
        if value is None or field.name in skip:
            continue
        flags += [field_flag.names[0], str(_in_flag_unit(value, field_flag))]
    return flags
