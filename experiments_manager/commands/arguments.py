"""The argparse pieces several sub-commands share: argument types and argument groups."""

import argparse

HPARAM_HELP = ("override hparams[KEY], a key the settings' hparams have (value parsed as a Python literal); "
               "+KEY=VALUE adds a new hparam; repeatable")


def positive_int(text: str) -> int:
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


def comma_separated(text: str) -> list[str]:
    """An argparse type: 'a,b' -> ['a', 'b'] (empty parts left out)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def add_hparam_argument(parser: argparse.ArgumentParser, help: str = HPARAM_HELP) -> None:
    """`--hparam KEY=VALUE`, repeatable (`settings.parse_hparam_overrides` reads the list)."""
    parser.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_bootstrap_servers_argument(parser: argparse.ArgumentParser) -> None:
    """`--bootstrap-servers`: the Kafka brokers (`train`, `kafka-produce`)."""
    parser.add_argument(
        "--bootstrap-servers", metavar="HOST:PORT[,...]",
        help="Kafka brokers, overriding the settings' kafka_bootstrap_servers",
    )
