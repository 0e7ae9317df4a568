"""`experiments-manager serve`: serve exported versions over TF Serving's gRPC and REST APIs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from experiments_manager.serving.options import add_server_arguments

if TYPE_CHECKING:
    from pathlib import Path

NAME = "serve"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="serve exported versions over gRPC and REST (TF Serving compatible)",
        description="Serve an experiment's exported versions, every experiment of a folder, or the models of a TF "
        "Serving models.config, "
        "over TF Serving's gRPC and REST APIs. New versions are picked up while training still runs.",
    )
    served = parser.add_mutually_exclusive_group(required=True)
    served.add_argument("--model_dir", metavar="EXPERIMENT_DIR", help="serve this experiment's exported_models/")
    served.add_argument(
        "--model_config_file", metavar="FILE", help="serve the models of this TF Serving models.config text proto"
    )
    served.add_argument(
        "--models_dir", metavar="FOLDER",
        help="serve every experiment below this folder (a working folder, sweeps included), each as its own model "
             "named after its path (GET /v1/models lists them); experiments added or removed are picked up",
    )
    served.add_argument(
        "--model", metavar="models:/NAME@ALIAS",
        help="serve the registered MLflow model version an alias (or models:/NAME/N a number) names, as model NAME "
             "with the alias as its version label; its files are downloaded into $XDG_CACHE_HOME/"
             "experiments_manager/mlflow-models (the server: --mlflow or MLFLOW_TRACKING_URI)",
    )
    parser.add_argument(
        "--mlflow", metavar="URI", default=None,
        help="with --model: the MLflow tracking server holding the registry (default: MLFLOW_TRACKING_URI)",
    )
    parser.add_argument(
        "--model_config_file_poll_wait_seconds", type=float, metavar="SECONDS",
        help="with --models_dir: how often the folder is looked at again (default 30; 0: only at start)",
    )
    parser.add_argument(
        "--write-models-config", metavar="FILE",
        help="with --models_dir: where the generated models.config goes (default FOLDER/models.config)",
    )
    add_server_arguments(parser)
    parser.add_argument(
        "--tensorflow-model-server", action="store_true",
        help="run the real tensorflow_model_server (PATH or --apptainer-image) instead of the embedded server",
    )
    parser.add_argument("--apptainer-image", metavar="SIF", help="with --tensorflow-model-server: image holding it")
    parser.add_argument(
        "--dry-run", action="store_true",
        help="with --tensorflow-model-server: print the command and models.config it would run, and exit",
    )
    parser.add_argument("--exit-with-parent", type=int, metavar="PID", help=argparse.SUPPRESS)
    return parser


def run(arguments: argparse.Namespace, argv: list[str]) -> int:
    """Serves until SIGINT/SIGTERM; returns the exit code."""
    from experiments_manager.serving.entry_points import serve

    if arguments.model is not None:  # the registry's version, downloaded, served through its own models.config
        from experiments_manager.serving.options import check_arguments

        check_arguments(arguments)  # the flags first: nothing downloaded for a command line that is refused
        arguments.model_config_file = str(registered_config(arguments.model, arguments.mlflow))
    elif arguments.mlflow is not None:
        from experiments_manager.utils.errors import UserInputError

        raise UserInputError("--mlflow: only with --model models:/NAME@ALIAS")
    return serve(arguments)


def registered_config(model: str, mlflow: "str | None") -> "Path":
    """The models.config serving the registered version `model` names (downloaded first)."""
    from experiments_manager.tracking.options import tracking_uri
    from experiments_manager.tracking.registry import cache_folder, resolve, served_config

    uri = tracking_uri(mlflow or "", "--mlflow")
    return served_config(resolve(model, uri), cache_folder())
