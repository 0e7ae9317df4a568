"""`experiments-manager serve`: serve exported versions over TF Serving's gRPC and REST APIs."""

from __future__ import annotations

import argparse

from experiments_manager.serving.options import add_server_arguments

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
    from experiments_manager.serving.launch import serve

    return serve(arguments)
