"""`experiments-manager predict`: stream the settings' Client_IO requests to a TF Serving compatible server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments_manager.commands.arguments import add_trust_code_argument

if TYPE_CHECKING:
    import argparse

NAME = "predict"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="stream requests from the settings' Client_IO to a server",
        description="Run the experiment settings' Client_IO loop against a TF Serving compatible server.",
    )
    parser.add_argument("--model_dir", required=True, metavar="EXPERIMENT_DIR", help="the experiment to query")
    parser.add_argument(
        "--predict_stream", type=int, default=1, metavar="N",
        help="number of requests; N < 0: until Client_IO.getInputData raises StopIteration (default 1)",
    )
    parser.add_argument(
        "--server", metavar="HOST:PORT",
        help="gRPC address (default: the settings' tensorflow_server_address:tensorflow_server_port)",
    )
    parser.add_argument(
        "--model-name", metavar="NAME",
        help="the served model to ask (default: the experiment's model name; a `serve --models_dir` server names "
             "each experiment by its path: see GET /v1/models)",
    )
    parser.add_argument(
        "--wait-for-server", type=float, default=0, metavar="SECONDS",
        help="wait up to SECONDS for the server to serve a version before the first request",
    )
    parser.add_argument(
        "--interval", type=float, default=0.0, metavar="SECONDS", help="pause between requests (default 0)"
    )
    parser.add_argument("--debug", action="store_true", help="Client_IO debugMode")
    add_trust_code_argument(parser, "the experiment's (its Client_IO runs here)")
    parser.add_argument(
        "--edge", metavar="FILE",
        help="answer on this machine with an exported file (RUN/edge/<format>-<quantization>/model.tflite or "
             "model.onnx, from `export`) in its local runtime, instead of a server",
    )
    return parser


def run(arguments: argparse.Namespace, argv: list[str]) -> int:
    """Streams the requests; returns the exit code."""
    from experiments_manager.utils.native_noise import import_tensorflow_quietly

    if arguments.edge:
        from experiments_manager.utils.errors import UserInputError

        given = [flag for flag, value in (("--server", arguments.server), ("--model-name", arguments.model_name),
                                          ("--wait-for-server", arguments.wait_for_server)) if value]
        if given:
            raise UserInputError(f"{', '.join(given)}: expected no server flag with --edge (answered on this "
                                 f"machine), got {', '.join(given)}")
        from experiments_manager.edge.formats import require_runtime

        require_runtime(arguments.edge)  # before TensorFlow is imported: the one line comes at once
    from experiments_manager.run.experiment import Experiment

    Experiment.open(arguments.model_dir, trust_code=arguments.trust_code).refuse_foreign_code()  # said at once too
    import_tensorflow_quietly()
    if arguments.edge:
        from experiments_manager.edge.predict import predict_on_device

        return predict_on_device(arguments.model_dir, arguments.edge, arguments.predict_stream, arguments.interval,
                                 arguments.debug, trust_code=arguments.trust_code)
    from experiments_manager.serving.entry_points import predict

    return predict(arguments)
