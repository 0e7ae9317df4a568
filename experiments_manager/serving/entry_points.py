"""What the `serve` and `predict` commands run: parsed arguments -> server or client objects (their parsers are
`experiments_manager.commands.serve` and `.predict`)."""

import argparse
import logging
import os
import sys
import threading

from typing import TYPE_CHECKING, NoReturn, cast

from experiments_manager.run.served_layout import DEFAULT_GRPC_PORT
from experiments_manager.serving.options import check_arguments, from_arguments
from experiments_manager.utils.errors import UserInputError, print_problems
from experiments_manager.utils.signals import SignalSafeEvent, signal_handlers, watch_parent

if TYPE_CHECKING:  # names for the hints only: TensorFlow and the folder's modules load when a command needs them
    from pathlib import Path

    from experiments_manager.run.served_layout import ModelSource
    from experiments_manager.serving.folder import WorkingFolder
    from experiments_manager.serving.options import ServerOptions
    from experiments_manager.serving.server import ModelServer

_LOG = logging.getLogger("experiments_manager.serving")


def serve(arguments: argparse.Namespace) -> int:
    """Runs the embedded server (or tensorflow_model_server) until SIGINT/SIGTERM; returns the exit code."""
    from experiments_manager.run.served_layout import sources_from_config_file
    from experiments_manager.serving.config import source_from_experiment

    check_arguments(arguments)
    if (arguments.apptainer_image or arguments.dry_run) and not arguments.tensorflow_model_server:
        raise UserInputError("--apptainer-image, --dry-run: only with --tensorflow-model-server")  # nothing written
    working_folder = _working_folder(arguments)
    if working_folder is not None:  # its models.config is written once the server listens (a busy port writes
        sources = working_folder.scan()  # nothing), or just before tensorflow_model_server starts; a dry run never
    elif arguments.model_dir:
        sources = [source_from_experiment(arguments.model_dir)]
    else:
        sources = sources_from_config_file(arguments.model_config_file)
    options = from_arguments(arguments, _default_grpc_port(arguments))
    if arguments.tensorflow_model_server:
        return _run_tensorflow_model_server(arguments, sources, options, working_folder)
    return _run_embedded(sources, options, arguments.exit_with_parent, working_folder)


def _working_folder(arguments: argparse.Namespace) -> "WorkingFolder | None":
    """The `WorkingFolder` of `--models_dir` (its flags checked), or None."""
    poll = arguments.model_config_file_poll_wait_seconds
    if not arguments.models_dir:
        flags = (("--model_config_file_poll_wait_seconds", poll),
                 ("--write-models-config", arguments.write_models_config))
        given = [flag for flag, value in flags if value is not None]
        if given:
            raise UserInputError(f"{', '.join(given)}: only with --models_dir FOLDER")
        return None
    from experiments_manager.serving.folder import DEFAULT_POLL_SECONDS, WorkingFolder

    if poll is not None and poll < 0:
        raise UserInputError(f"--model_config_file_poll_wait_seconds: expected >= 0, got {poll:g}")
    return WorkingFolder(arguments.models_dir, arguments.write_models_config,
                         DEFAULT_POLL_SECONDS if poll is None else poll)


def _default_grpc_port(arguments: argparse.Namespace) -> int:
    if arguments.grpc_port is not None:
        return cast(int, arguments.grpc_port)
    if arguments.model_dir:
        from experiments_manager.run.experiment import Experiment
        from experiments_manager.serving.config import read_run_info
        from experiments_manager.settings import load_experiment_settings

        experiment = Experiment.open(arguments.model_dir, record=False)  # a damaged run.json is said, not fatal
        info, _ = read_run_info(experiment)
        if info is None:  # damaged (source_from_experiment has said so): the settings copy's literal port, if any
            return _literal_port(experiment.settings_copy)
        recorded = info.get("tensorflow_server_port")
        if recorded is not None:
            return recorded
        try:
            experiment.refuse_foreign_code()
        except UserInputError:  # another user's code is not run for a port: the literal one, if any
            return _literal_port(experiment.settings_copy)
        port: int = load_experiment_settings(experiment).serving.port  # recorded since issue 17; older runs
        return port
    return DEFAULT_GRPC_PORT


def _literal_port(settings_file: "Path") -> int:
    """The settings file's `tensorflow_server_port` when it is a literal port (nothing runs), else TF Serving's."""
    from experiments_manager.run.reservation import literal_assignments

    port = literal_assignments(settings_file, ("tensorflow_server_port",)).get("tensorflow_server_port")
    valid = isinstance(port, int) and not isinstance(port, bool) and 0 <= port <= 65535
    return cast(int, port) if valid else DEFAULT_GRPC_PORT


def _run_tensorflow_model_server(arguments: argparse.Namespace, sources: "list[ModelSource]", options: "ServerOptions",
                                 working_folder: "WorkingFolder | None" = None) -> int:
    import tempfile

    from experiments_manager.serving.tfserving import TensorFlowModelServer

    launcher = TensorFlowModelServer(sources, options, arguments.apptainer_image, working_folder)
    if arguments.dry_run:
        with tempfile.TemporaryDirectory() as folder:
            command = launcher.write_config_files(folder, dry_run=True)
            print(" ".join(command))
            for path in sorted(os.listdir(folder)):
                print(f"--- {path}\n{open(os.path.join(folder, path)).read()}", end="")
        if working_folder is not None:
            print(f"--- {working_folder.config_file} (written when serving)\n{working_folder.config_text(sources)}",
                  end="")
        return 0
    _LOG.warning("tensorflow_model_server has no bind-address flag: it listens on every interface (0.0.0.0)")
    if working_folder is None:
        return launcher.run()
    working_folder.update()  # the models.config the binary reads, written (and said) before it starts
    stop = threading.Event()  # the folder is polled here; the binary re-reads the models.config it rewrites
    working_folder.watch(lambda sources: None, stop)
    try:
        return launcher.run()
    finally:
        stop.set()


def _run_embedded(sources: "list[ModelSource]", options: "ServerOptions", parent_pid: "int | None",
                  working_folder: "WorkingFolder | None" = None) -> int:
    from experiments_manager.utils.native_noise import import_tensorflow_quietly

    import_tensorflow_quietly()
    from experiments_manager.serving.server import STOP_GRACE_SECONDS, ModelServer

    stop = SignalSafeEvent()

    def parent_gone() -> None:
        _LOG.info("the training process %d is gone: stopping", parent_pid)
        stop.set()

    with signal_handlers(lambda signum, frame: stop.set()), ModelServer(sources, options) as server:
        if working_folder is not None:  # listening: the models.config is written, what is served said
            latest = working_folder.update()
            if latest is not None and latest != server.sources:  # the folder changed since the first look
                server.replace_sources(latest)
        _log_addresses(server, working_folder)
        if working_folder is not None:
            working_folder.watch(server.replace_sources, stop)
        if parent_pid:
            watch_parent(parent_pid, parent_gone)
        while not stop.wait(1.0):  # a timed wait: signal handlers run between two waits
            pass
        _LOG.info("stopping the server")
    if server.predictor.in_flight:
        _leave_without_requests(server.predictor.in_flight, STOP_GRACE_SECONDS)
    return 0


def _leave_without_requests(requests: int, grace_seconds: float) -> NoReturn:
    """Exits now (0) although `requests` are still being worked on past the stop's grace: Python would wait for
    their threads at exit, and a stop signal must stop the server. What was said is flushed first."""
    _LOG.warning("stopped with %d request(s) still in flight after the %g s grace: they get no answer",
                 requests, grace_seconds)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or gone stream: nothing more to say there
            pass
    os._exit(0)


def _log_addresses(server: "ModelServer", working_folder: "WorkingFolder | None" = None) -> None:
    if working_folder is None:  # a working folder has said what it serves, under which names (serving.folder)
        for source in server.sources:
            policy = {"latest": f"latest {source.num_versions}", "all": "all",
                      "specific": f"specific {list(source.versions)}"}
            _LOG.info("Serving %s from %s (versions: %s)", source.name, source.base_path, policy[source.policy])
    _LOG.info("gRPC: %s  (tensorflow.serving.PredictionService, ModelService)", server.grpc_address)
    if server.rest_url:
        for source in server.sources:
            _LOG.info("REST: %s/v1/models/%s", server.rest_url, source.name)
        if working_folder is not None:
            _LOG.info("REST: %s/v1/models  (the model list; %s is looked at again every %g s)", server.rest_url,
                      working_folder.folder, working_folder.poll_seconds)
    _LOG.info("Ctrl-C or SIGTERM stops the server.")


def predict(arguments: argparse.Namespace) -> int:
    """Streams the settings' Client_IO requests; returns 0, or 1 with one line when the server fails."""
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.serving.client import ClientError, StreamingClient
    from experiments_manager.settings import load_experiment_settings

    experiment = Experiment.open(arguments.model_dir, trust_code=arguments.trust_code)
    settings = load_experiment_settings(experiment)
    address = arguments.server or f"{settings.serving.address}:{settings.serving.port}"
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserInputError(f"--server: expected HOST:PORT, got {address!r}")
    signature = experiment.run_info().get("model_name") or settings.model_name  # the exporter names it so
    model_name = arguments.model_name or signature  # a folder's server names the experiment by its path
    specs = {"model_dir": str(experiment.root), "model_name": model_name, "server": address}
    client = StreamingClient(settings, address, model_name, specs, arguments.debug, signature_name=signature)
    stop = SignalSafeEvent()  # Ctrl-C / SIGTERM end an endless stream normally: finalize, summary, exit 0
    try:
        with signal_handlers(lambda signum, frame: stop.set()):
            if arguments.wait_for_server > 0:
                client.wait_until_served(arguments.wait_for_server, stop)
            report = client.stream(arguments.predict_stream, arguments.interval, stop)
    except ClientError as error:
        sys.stdout.flush()  # what Client_IO printed (finalize's last words) comes before the outcome
        print_problems(str(error))
        return 1
    if report.requests:
        print(
            f"{report.requests} requests answered by {model_name} versions {report.versions} at {address}; "
            f"latency p50 {report.percentile(0.5):.1f} ms, p99 {report.percentile(0.99):.1f} ms"
        )
    else:
        why = "stopped before the first request" if stop.is_set() else "Client_IO.getInputData stopped at once"
        print(f"no request sent ({why}) to {address}")
    return 0
