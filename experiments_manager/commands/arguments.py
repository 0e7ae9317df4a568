"""The argparse pieces several sub-commands share: argument types and argument groups."""

import argparse

from experiments_manager.settings.contract import DEFAULT_REST_PORT

HPARAM_HELP = "override hparams[KEY] (value parsed as a Python literal); repeatable"


def positive_int(text):
    """An argparse type: an int > 0."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected an int > 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number > 0.

    Example:

    ```python
    parser.add_argument("--timing-seconds", type=positive_float)
    ```
    """
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def comma_separated(text):
    """An argparse type: 'a,b' -> ['a', 'b'] (empty parts left out)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def add_hparam_argument(parser, help=HPARAM_HELP):
    """`--hparam KEY=VALUE`, repeatable (`settings.parse_hparam_overrides` reads the list)."""
    parser.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_bootstrap_servers_argument(parser):
    """`--bootstrap-servers`: the Kafka brokers (`train`, `kafka-produce`)."""
    parser.add_argument(
        "--bootstrap-servers", metavar="HOST:PORT[,...]",
        help="Kafka brokers, overriding the settings' kafka_bootstrap_servers",
    )


def add_server_arguments(parser):
    """The model server's flags, in a "server" group (`serve`, `train --serve`);
    `serving.command.check_server_arguments` checks their values."""
    group = parser.add_argument_group("server")
    group.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    group.add_argument(
        "--grpc-port", "--port", dest="grpc_port", type=int, metavar="PORT",
        help="gRPC port (default: the settings' tensorflow_server_port, else 8500; 0: any free port)",
    )
    group.add_argument(
        "--rest-port", "--rest_api_port", dest="rest_port", type=int, default=DEFAULT_REST_PORT, metavar="PORT",
        help=f"REST port (default {DEFAULT_REST_PORT}; 0: any free port)",
    )
    group.add_argument(
        "--file_system_poll_wait_seconds", type=float, default=1.0, metavar="SECONDS",
        help="how often new versions are looked for (default 1)",
    )
    group.add_argument("--enable_batching", action="store_true", help="merge concurrent requests into one model call")
    group.add_argument("--max_batch_size", type=int, default=32, metavar="N", help="with batching: most rows per call (32)")
    group.add_argument(
        "--batch_timeout_micros", type=int, default=1000, metavar="US",
        help="with batching: longest wait for more requests (1000)",
    )
    group.add_argument(
        "--max-request-bytes", type=int, default=64 << 20, metavar="BYTES",
        help="largest accepted request, REST body or gRPC message (default 64 MiB)",
    )
    group.add_argument(
        "--rest_api_timeout_in_ms", type=int, default=30000, metavar="MS",
        help="a REST request must arrive whole within this time, else 408 (default 30000; tensorflow_model_server, "
             "given the same flag, times the whole call)",
    )
