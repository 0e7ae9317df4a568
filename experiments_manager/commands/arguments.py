"""The argparse pieces several sub-commands share: argument types and argument groups."""

import argparse

from experiments_manager.utils.code_trust import TRUST_CODE_OPTION

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


def add_trust_code_argument(parser: argparse.ArgumentParser, what: str = "the run's") -> None:
    """`--trust-code`: load a folder whose code another user owns (`utils/code_trust.py`)."""
    parser.add_argument(
        TRUST_CODE_OPTION, action="store_true",
        help=f"run {what} copies of its settings and model files although another user owns them (a colleague's "
        "folder: refused otherwise; loading a run runs its code, see docs/explanation/security.md)",
    )


RUN_HELP = "the experiment folder, or a registered MLflow version: models:/NAME@ALIAS (models:/NAME/N)"


def add_registered_run_argument(parser: argparse.ArgumentParser) -> None:
    """RUN (a folder or `models:/NAME@ALIAS`) and `--mlflow URI`, the registry's server."""
    parser.add_argument("run", metavar="RUN", help=RUN_HELP)
    parser.add_argument("--mlflow", metavar="URI", default=None,
                        help="with RUN models:/...: the MLflow tracking server holding the registry "
                        "(default: MLFLOW_TRACKING_URI)")


def resolve_registered_run(arguments: argparse.Namespace) -> None:
    """RUN given as `models:/NAME@ALIAS`: `arguments.run` and `.version` become the run folder and exported version
    the registry's version came from (the folder must be on this machine).

    Raises:
        UserInputError: a bad URI, one naming nothing, a run not here, a `--version` other than the registered one,
            or `--mlflow` with a folder.
    """
    from experiments_manager.tracking.options import tracking_uri
    from experiments_manager.tracking.registry import is_model_uri, resolve, run_version
    from experiments_manager.utils.errors import UserInputError

    if not is_model_uri(arguments.run):
        if arguments.mlflow is not None:
            raise UserInputError("--mlflow: only with RUN given as models:/NAME@ALIAS")
        return

    version = resolve(arguments.run, tracking_uri(arguments.mlflow or "", "--mlflow"), where="RUN")
    folder, exported = run_version(version)
    if arguments.version is not None and arguments.version != exported:
        raise UserInputError(f"--version: {arguments.run} is version {exported} of {folder}, got {arguments.version}")
    print(f"{arguments.run}: version {version.number} of {version.name}, exported version {exported} of {folder}")
    arguments.run, arguments.version = str(folder), exported
