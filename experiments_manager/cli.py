"""The `experiments-manager` command line. TensorFlow is imported only by commands that need it."""

import argparse
import contextlib
import logging
import signal
import sys

from experiments_manager.contract import DEFAULT_REST_PORT
from experiments_manager.errors import EXIT_USER_ERROR, UserInputError, print_problems
from experiments_manager.logging_setup import configure_logging
from experiments_manager.requeue_file import add_requeue_file_argument

_LOG = logging.getLogger("experiments_manager.cli")

DESCRIPTION = "Train, export and track TensorFlow/Keras experiments from one settings file."
SUBCOMMANDS = ("train", "serve", "predict", "sweep", "kafka-produce", "federated", "list")


def build_parser():
    parser = argparse.ArgumentParser(prog="experiments-manager", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a new experiment, or resume one",
        description="Train a model from a settings file into a new experiment folder, or resume one.",
    )
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("-u", "--usersettings", metavar="SETTINGS", help="the settings module (.py)")
    source.add_argument(
        "--resume", "--model_dir", dest="resume", metavar="EXPERIMENT_DIR",
        help="continue this experiment from its last checkpoint",
    )
    train.add_argument(
        "--hparam", action="append", default=[], metavar="KEY=VALUE",
        help="override hparams[KEY] (value parsed as a Python literal); repeatable",
    )
    train.add_argument(
        "--serve", action="store_true",
        help="serve the experiment's exported versions while it trains (a `serve` process beside training)",
    )
    train.add_argument(
        "--keep-serving", action="store_true", help="with --serve: keep serving after training ends, until Ctrl-C"
    )
    train.add_argument(
        "--workers", type=_positive_int, default=1, metavar="N",
        help="train with N cooperating processes on this machine (MultiWorkerMirroredStrategy over 127.0.0.1). "
        "Across nodes, start one process per node with TF_CONFIG set, or one per task with `srun`",
    )
    add_requeue_file_argument(train)
    _add_bootstrap_servers_argument(train)
    _add_server_arguments(train)

    serve = commands.add_parser(
        "serve",
        help="serve exported versions over gRPC and REST (TF Serving compatible)",
        description="Serve an experiment's exported versions, or the models of a TF Serving models.config, "
        "over TF Serving's gRPC and REST APIs. New versions are picked up while training still runs.",
    )
    served = serve.add_mutually_exclusive_group(required=True)
    served.add_argument("--model_dir", metavar="EXPERIMENT_DIR", help="serve this experiment's exported_models/")
    served.add_argument(
        "--model_config_file", metavar="FILE", help="serve the models of this TF Serving models.config text proto"
    )
    _add_server_arguments(serve)
    serve.add_argument(
        "--tensorflow-model-server", action="store_true",
        help="run the real tensorflow_model_server (PATH or --apptainer-image) instead of the embedded server",
    )
    serve.add_argument("--apptainer-image", metavar="SIF", help="with --tensorflow-model-server: image holding it")
    serve.add_argument(
        "--dry-run", action="store_true",
        help="with --tensorflow-model-server: print the command and models.config it would run, and exit",
    )
    serve.add_argument("--exit-with-parent", type=int, metavar="PID", help=argparse.SUPPRESS)

    predict = commands.add_parser(
        "predict",
        help="stream requests from the settings' Client_IO to a server",
        description="Run the experiment settings' Client_IO loop against a TF Serving compatible server.",
    )
    predict.add_argument("--model_dir", required=True, metavar="EXPERIMENT_DIR", help="the experiment to query")
    predict.add_argument(
        "--predict_stream", type=int, default=1, metavar="N",
        help="number of requests; N < 0: until Client_IO.getInputData raises StopIteration (default 1)",
    )
    predict.add_argument(
        "--server", metavar="HOST:PORT",
        help="gRPC address (default: the settings' tensorflow_server_address:tensorflow_server_port)",
    )
    predict.add_argument(
        "--wait-for-server", type=float, default=0, metavar="SECONDS",
        help="wait up to SECONDS for the server to serve a version before the first request",
    )
    predict.add_argument(
        "--interval", type=float, default=0.0, metavar="SECONDS", help="pause between requests (default 0)"
    )
    predict.add_argument("--debug", action="store_true", help="Client_IO debugMode")

    produce = commands.add_parser(
        "kafka-produce",
        help="publish the settings' input pipelines to Kafka topics",
        description="Run the settings' get_input_pipeline for training and validation and publish one "
        "self-describing record per sample to <session_name>_train and <session_name>_val.",
    )
    produce.add_argument("-u", "--usersettings", required=True, metavar="SETTINGS", help="the settings module (.py)")
    produce.add_argument(
        "--hparam", action="append", default=[], metavar="KEY=VALUE",
        help="override hparams[KEY] (value parsed as a Python literal); repeatable",
    )
    _add_bootstrap_servers_argument(produce)
    produce.add_argument(
        "--epochs", type=_positive_int, metavar="N",
        help="passes over the training pipeline (default: the settings' nbEpoch, what one training run reads; "
        "validation is published once)",
    )
    produce.add_argument(
        "--partitions", type=_positive_int, default=1, metavar="N",
        help="partitions of topics that do not exist yet (default 1)",
    )
    produce.add_argument("--only", choices=("train", "val"), help="publish only this split")

    from experiments_manager.sweep.command import add_sweep_parser

    add_sweep_parser(commands, _positive_int)

    from experiments_manager.federated.command import add_federated_parser

    add_federated_parser(commands, _positive_int)

    listing = commands.add_parser(
        "list", help="table of experiments", description="Print a table of the experiments in a working folder."
    )
    listing.add_argument("working_folder", nargs="?", default=".", metavar="WORKING_FOLDER")
    return parser


def _add_server_arguments(parser):
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


def _add_bootstrap_servers_argument(parser):
    parser.add_argument(
        "--bootstrap-servers", metavar="HOST:PORT[,...]",
        help="Kafka brokers, overriding the settings' kafka_bootstrap_servers",
    )


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected an int > 0, got {text!r}")
    return value


def _with_default_command(argv):
    """The original framework's spellings: no sub-command trains, `--predict_stream` predicts,
    `--start_server` serves."""
    argv = list(argv)
    if not argv or argv[0] in SUBCOMMANDS or argv[0] in ("-h", "--help"):
        return argv
    if "--start_server" in argv:
        return ["serve"] + [argument for argument in argv if argument != "--start_server"]
    if any(argument.split("=", 1)[0] == "--predict_stream" for argument in argv):
        return ["predict"] + argv
    return ["train"] + argv


def main(argv=None):
    """Runs the command line; returns the exit code."""
    argv = _with_default_command(sys.argv[1:] if argv is None else argv)
    arguments = build_parser().parse_args(argv)
    configure_logging()
    try:
        if arguments.command == "train" and arguments.workers > 1:
            from experiments_manager.distribute.local_workers import LocalWorkers, without_workers_flag

            return LocalWorkers(without_workers_flag(argv), arguments.workers).run()
        if arguments.command == "train":
            return _train(arguments)
        if arguments.command == "serve":
            return _serve(arguments)
        if arguments.command == "predict":
            return _predict(arguments)
        if arguments.command == "sweep":
            from experiments_manager.sweep.command import sweep

            return sweep(arguments)
        if arguments.command == "kafka-produce":
            from experiments_manager.kafka.command import kafka_produce

            return kafka_produce(arguments)
        if arguments.command == "federated":
            from experiments_manager.federated.command import federated

            return federated(arguments)
        if arguments.command == "list":
            return _list(arguments)
        build_parser().print_help()
        return 2
    except UserInputError as error:
        print_problems(error.problems)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:  # what was interrupted has said so (a training run: run.json, "resume with")
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return 128 + signal.SIGINT


def _train(arguments):
    from experiments_manager import training
    from experiments_manager.requeue_file import resume_remembered
    from experiments_manager.settings import load_settings, parse_hparam_overrides

    if arguments.keep_serving and not arguments.serve:
        raise UserInputError("--keep-serving: only with --serve")
    alongside = _serving_alongside(arguments) if arguments.serve else None
    requeue = resume_remembered(arguments, recorded={"hparam": []})  # the run keeps its recorded hparams
    if requeue is not None:
        alongside = _remembering(requeue, alongside)
    if arguments.resume:
        if arguments.hparam:
            raise UserInputError("--hparam: not accepted with --resume (the run keeps its own hparams)")
        outcome = training.resume(arguments.resume, alongside=alongside,
                                  kafka_bootstrap_servers=arguments.bootstrap_servers)
    else:
        settings = load_settings(arguments.usersettings, parse_hparam_overrides(arguments.hparam))  # executed once
        if settings.enable_federated_learning:
            from experiments_manager.federated.command import simulate_command

            if arguments.serve or arguments.bootstrap_servers:
                raise UserInputError("--serve, --bootstrap-servers: not accepted for a federated settings file "
                                     "(serve the experiment folder with `experiments-manager serve`)")
            _LOG.info("%s sets enable_federated_learning = True: simulating the federation on this machine "
                      "(see `experiments-manager federated --help` for deployment)", arguments.usersettings)
            return simulate_command(settings)
        outcome = training.train(settings, alongside=alongside, kafka_bootstrap_servers=arguments.bootstrap_servers)
    _report(outcome)
    return outcome.exit_code


def _remembering(requeue, alongside):
    """The `alongside` factory that first writes the new experiment's folder to the requeue file."""
    def remember_then(experiment):
        requeue.remember(experiment.root)
        return alongside(experiment) if alongside is not None else contextlib.nullcontext()

    return remember_then


def _serving_alongside(arguments):
    """`train --serve`: a factory for the serve process started once the experiment folder exists.

    The server flags are checked now, so a bad one stops the command before any folder is created.
    """
    from experiments_manager.serving.command import check_server_arguments
    from experiments_manager.serving.sidecar import ServingSidecar

    check_server_arguments(arguments)
    forwarded = ["--host", arguments.host, "--rest-port", str(arguments.rest_port),
                 "--file_system_poll_wait_seconds", str(arguments.file_system_poll_wait_seconds),
                 "--max-request-bytes", str(arguments.max_request_bytes)]
    if arguments.grpc_port is not None:
        forwarded += ["--grpc-port", str(arguments.grpc_port)]
    if arguments.enable_batching:
        forwarded += ["--enable_batching", "--max_batch_size", str(arguments.max_batch_size),
                      "--batch_timeout_micros", str(arguments.batch_timeout_micros)]
    return lambda experiment: ServingSidecar(experiment, forwarded, keep_serving=arguments.keep_serving)


def _serve(arguments):
    from experiments_manager.serving.command import serve

    return serve(arguments)


def _predict(arguments):
    from experiments_manager.serving.command import predict

    return predict(arguments)


def _report(outcome):
    experiment = outcome.experiment
    if experiment is None:  # a non-chief worker: the chief reports the experiment
        print(f"status:            {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else ""))
        return
    info = experiment.run_info()
    last = info.get("last_exported_version")
    lines = [
        f"status:            {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else ""),
        f"experiment folder: {experiment.root}",
        f"best {info.get('monitored_loss_name')}: {info.get('best_value')} (epoch {info.get('best_epoch')})",
        f"exported model:    {experiment.export_dir / str(last) if last else 'none yet'}",
        f"TF Serving config: {experiment.models_config}",
        f"training curves:   {experiment.curves_png}",
        f"TensorBoard:       tensorboard --logdir {experiment.root.parent}",
    ]
    if outcome.status == "interrupted":
        lines.append(f"resume with:       experiments-manager train --resume {experiment.root}")
    print("\n".join(lines))


def _list(arguments):
    from experiments_manager.listing import SWEEP_COLUMNS, experiment_rows, format_table, sweep_rows

    print(format_table(experiment_rows(arguments.working_folder)))
    sweeps = sweep_rows(arguments.working_folder)
    if sweeps:
        print()
        print(format_table(sweeps, SWEEP_COLUMNS))
    return 0
