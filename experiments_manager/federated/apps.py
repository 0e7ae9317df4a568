"""Flower's ServerApp and ClientApps for a federation, built from a `FederatedJob`.

Simulation hands the job to `server_app`/`client_app` directly; deployment
(`flwr run`) rebuilds it from the run config in `experiments_manager.federated.deployed`,
where a SuperNode started by `federated supernode` runs `worker_client_app`: the
message goes to the SuperNode's persistent worker, and TensorFlow stays out of
the ClientApp's process.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, cast

if TYPE_CHECKING:
    from flwr.app import ArrayRecord, Context, Message, MetricRecordValues
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from numpy.typing import NDArray

    from experiments_manager.federated.federated_client import FederatedClient
    from experiments_manager.federated.federation_config import FederationConfig
    from experiments_manager.federated.federation_server import FederationServer
    from experiments_manager.federated.job import FederatedJob
    from experiments_manager.federated.stopping import StopRequest
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings.loader import Settings
    from experiments_manager.utils.atomic import PathLike

    JobOf = Callable[[Context], FederatedJob]  # the job of a run, from its Flower context

_LOG = logging.getLogger(__name__)
LOCAL_EPOCHS_KEY = "local-epochs"


def server_app(job_of: JobOf, stop: Optional[StopRequest] = None) -> ServerApp:
    """A `ServerApp` running the federation of `job_of(context)` (a function Context -> FederatedJob); it ends
    `interrupted` once `stop` (a `stopping.StopRequest`, default None) is set."""
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_federation(job_of(context), grid, stop)

    return app


def client_app(job_of: JobOf) -> ClientApp:
    """A `ClientApp` training and evaluating the partition its SuperNode was given.

    The node config (Flower's simulation sets it; a SuperNode gets it from
    `--node-config`) must give `partition-id` and `num-partitions`. Each message
    builds the client from its checkpoint: Flower may deliver the next one to
    another process.
    """
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @contextlib.contextmanager
    def client_for(context: Context) -> Iterator[FederatedClient]:
        from experiments_manager.federated.federated_client import FederatedClient, node_partition

        client = FederatedClient(job_of(context), node_partition(context.node_config))
        try:
            yield client
        finally:
            client.close()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        from experiments_manager.federated.federated_client import PROXIMAL_MU_KEY, ROUNDS_KEY

        content = message.content
        config: Mapping[str, Any] = content["config"] if "config" in content else {}
        with client_for(context) as client:
            weights, metrics = client.train_round(cast("ArrayRecord", content["arrays"]).to_numpy_ndarrays(),
                                                  float(config.get(PROXIMAL_MU_KEY, 0.0)),
                                                  config.get("server-round"), config.get(ROUNDS_KEY))
        reply = RecordDict({"arrays": ArrayRecord(weights),
                            "metrics": MetricRecord(cast("dict[str, MetricRecordValues]", metrics))})
        return Message(reply, reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        with client_for(context) as client:
            metrics = client.evaluate(cast("ArrayRecord", message.content["arrays"]).to_numpy_ndarrays())
        return Message(RecordDict({"metrics": MetricRecord(cast("dict[str, MetricRecordValues]", metrics))}),
                       reply_to=message)

    return app


def worker_client_app(worker_folder: PathLike, app_dir: PathLike) -> ClientApp:
    """A `ClientApp` that hands each message to the SuperNode's persistent worker (`federated.supernode_worker`).

    It imports neither TensorFlow nor the settings: the worker, started with
    the SuperNode, trains with the same `FederatedClient` as `client_app` and
    keeps it between rounds. A worker that dies in a round makes this message
    fail (Flower reports the error to the server, which goes on under minFit).

    Args:
        worker_folder: the SuperNode's worker folder (`worker.FOLDER_VARIABLE` in the environment).
        app_dir: the Flower app folder the SuperNode installed (relative files of the run config).

    Example:

    ```python
    client_app = worker_client_app(os.environ[FOLDER_VARIABLE], Path(__file__).parent)
    ```
    """
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    from experiments_manager.federated.worker_protocol import ask_worker

    app = ClientApp()

    def ask(kind: str, message: Message, context: Context) -> tuple[list[NDArray[Any]], dict[str, Any]]:
        content = message.content
        config: Mapping[str, Any] = content["config"] if "config" in content else {}
        request = {"kind": kind, "run_id": message.metadata.run_id, "run_config": dict(context.run_config),
                   "app_dir": str(app_dir), "node_config": dict(context.node_config),
                   "config": {key: value for key, value in config.items()
                              if isinstance(value, (bool, int, float, str))}}
        return ask_worker(worker_folder, request, cast("ArrayRecord", content["arrays"]).to_numpy_ndarrays())

    @app.train()
    def train(message: Message, context: Context) -> Message:
        weights, metrics = ask("train", message, context)
        reply = RecordDict({"arrays": ArrayRecord(weights), "metrics": MetricRecord(metrics)})
        return Message(reply, reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        _, metrics = ask("evaluate", message, context)
        return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=message)

    return app


def run_federation(job: FederatedJob, grid: Grid, stop: Optional[StopRequest] = None) -> None:
    """The ServerApp's work: open the server experiment, run the strategy's rounds, record how it ended (`stop`: a
    `stopping.StopRequest` the grid checks; default None)."""
    from experiments_manager.federated.federation_config import FederationConfig
    from experiments_manager.federated.federation_server import FederationServer
    from experiments_manager.run.experiment import Experiment, running_command
    from experiments_manager.run.lifecycle import attempt
    from experiments_manager.tracking.session import tracked

    settings = job.load_settings()
    config = FederationConfig.from_settings(settings, rounds=job.rounds, num_clients=job.num_clients)
    if job.round_timeout:
        config.round_timeout = job.round_timeout
    if job.experiment_dir and Path(job.experiment_dir, "run.json").is_file():
        experiment = Experiment.open(job.experiment_dir)
    else:  # `flwr run` without our CLI, or a SuperLink host that does not share the CLI's file system
        experiment = Experiment.create(settings, running_command(), root=job.experiment_dir or None)
        job.experiment_dir = str(experiment.root)
    # one writer: a second federation is refused; logged to MLflow when its folder names a server (`start_federation`)
    with attempt(experiment, running_command(), console=False), tracked(experiment, None) as tracking:
        experiment.record.federation({**_description(config), "num_clients": job.num_clients})  # (None: deployed)
        _LOG.info("Federation %s; server experiment folder: %s", config.describe(), experiment.root)
        server = FederationServer(experiment, settings, config, tracking, init_from=job.initial_weights())
        _serve_rounds(server, config, settings, grid, stop)


def _serve_rounds(server: FederationServer, config: FederationConfig, settings: Settings, grid: Grid,
                  stop: Optional[StopRequest]) -> None:
    """The strategy's rounds, and how they ended in run.json (an error the lifecycle maps leaves it raised)."""
    from experiments_manager.federated.federation_server import FederationStopped
    from experiments_manager.federated.stopping import FederationInterrupted
    from experiments_manager.run.endings import failed, finished, flower_stopped
    from experiments_manager.run.lifecycle import record_ending

    experiment = server.experiment
    rounds_ended = False
    try:
        _run_rounds(server, config, settings, grid, stop)
        rounds_ended = True
        server.finish()  # the last version written, TensorBoard flushed: its errors are the federation's
    except (FederationStopped, FederationInterrupted) as ended:
        # FederationInterrupted: raised by the grid only once `stop` is set; FederationStopped (too few replies) after
        # a stop: its clients were stopped by the same signal (`scancel` signals every process of a job, Ray's too)
        if stop is not None and stop.is_set():
            info = record_ending(experiment, stop.ending(experiment.run_info().get("rounds_completed")))
            _LOG.info("Federation %s", (info or {}).get("reason"))
            return
        if not _stopped_by_the_machine(experiment, ended, f" ({ended})"):  # a client's disk full, its I/O failed
            record_ending(experiment, failed(str(ended)))
            _LOG.error("Federation stopped: %s", ended)
        return
    except Exception as error:
        if not _stopped_by_the_machine(experiment, error):  # the server's own disk full...; else the lifecycle
            raise  # records it as it does a run's (`attempt`)
        return
    except SystemExit:  # Flower ends a ServerApp whose run was stopped (`flwr stop`, `federated run` stopped)
        record_ending(experiment, flower_stopped("the Flower run was stopped"), only_if_running=True)
        raise
    finally:
        if not rounds_ended:  # its ending first (a signal's grace period is short), as a stopped run's
            _finish_after_the_ending(server)
    record_ending(experiment, finished())


def _run_rounds(server: FederationServer, config: FederationConfig, settings: Settings, grid: Grid,
                stop: Optional[StopRequest]) -> None:
    """The rounds left: none when it was stopped after its last round was checkpointed."""
    from flwr.app import ConfigRecord

    from experiments_manager.federated.federated_client import ROUNDS_KEY
    from experiments_manager.federated.federation_server import supervised_strategy
    from experiments_manager.federated.grid import ResponsiveGrid

    rounds_left = config.rounds - server.first_round  # a resumed federation goes on from its checkpoint
    if rounds_left <= 0:
        return
    strategy = supervised_strategy(config, server)
    server.adopt_strategy(strategy)  # its state is checkpointed each round, and a resumed one gets it back
    strategy.start(
        grid=cast("Grid", ResponsiveGrid(grid, stop=stop)),  # a Grid to the strategy: it delegates to one
        initial_arrays=server.initial_arrays(),
        num_rounds=rounds_left,
        timeout=config.round_timeout,
        train_config=ConfigRecord({LOCAL_EPOCHS_KEY: settings.training.epochs, ROUNDS_KEY: config.rounds}),
        evaluate_fn=server.evaluate,
    )


def _finish_after_the_ending(server: FederationServer) -> None:
    """`FederationServer.finish` once the federation's ending is recorded: a failure is logged and the ending
    stands, as a stopped run's (`Trainer._interrupted`)."""
    try:
        server.finish()
    except Exception as error:  # noqa: BLE001 - the ending recorded is what the user sees
        _LOG.warning("%s: the server's last records could not be completed: %s", server.experiment.root, error)


def _stopped_by_the_machine(experiment: Experiment, error: BaseException, detail: str = "") -> bool:
    """Whether `error` is the machine's failure (a full disk, failing I/O: `environment_failures`), then recorded
    as the federation's ending: interrupted, resumable once mended, 75 as for a run; the command's summary says it.
    The server's own writes and its clients' (their folders are in the server's) end it alike; `detail`: what
    the round saw (a client's error)."""
    from experiments_manager.run.endings import environment_failure
    from experiments_manager.run.lifecycle import record_ending
    from experiments_manager.utils.environment_failures import environment_failure_line

    machine = environment_failure_line(error, str(experiment.root))
    if machine is None:
        return False
    record_ending(experiment, environment_failure(machine + detail))
    _LOG.error("Federation stopped: %s", machine)
    return True


def _description(config: FederationConfig) -> dict[str, Any]:
    return {"strategy": config.strategy_name, "parameters": config.strategy_parameters, "minCl": config.min_clients,
            "minFit": config.min_fit, "minEval": config.min_eval, "rounds": config.rounds,
            "client_evaluation": config.client_evaluation,
            "round_timeout_secs": config.round_timeout}
