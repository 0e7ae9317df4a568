"""Flower's ServerApp and ClientApp for a federation, built from a `FederatedJob`.

Simulation hands the job to `server_app`/`client_app` directly; deployment
(`flwr run`) rebuilds it from the run config in `experiments_manager.federated.deployed`.
"""

import contextlib
import logging
from pathlib import Path

_LOG = logging.getLogger(__name__)
LOCAL_EPOCHS_KEY = "local-epochs"
PROXIMAL_MU_KEY = "proximal-mu"  # what Flower's FedProx sends to clients


def server_app(job_of):
    """A `ServerApp` running the federation of `job_of(context)` (a function Context -> FederatedJob)."""
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid, context):
        run_federation(job_of(context), grid)

    return app


def client_app(job_of):
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
    def client_for(context):
        from experiments_manager.federated.client import FederatedClient

        client = FederatedClient(job_of(context), _partition(context.node_config))
        try:
            yield client
        finally:
            client.close()

    @app.train()
    def train(message, context):
        content = message.content
        config = content["config"] if "config" in content else {}
        with client_for(context) as client:
            weights, metrics = client.train_round(content["arrays"].to_numpy_ndarrays(),
                                                  float(config.get(PROXIMAL_MU_KEY, 0.0)),
                                                  config.get("server-round"))
        reply = RecordDict({"arrays": ArrayRecord(weights), "metrics": MetricRecord(metrics)})
        return Message(reply, reply_to=message)

    @app.evaluate()
    def evaluate(message, context):
        with client_for(context) as client:
            metrics = client.evaluate(message.content["arrays"].to_numpy_ndarrays())
        return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=message)

    return app


def run_federation(job, grid):
    """The ServerApp's work: open the server experiment, run the strategy's rounds, record how it ended."""
    from flwr.app import ConfigRecord

    from experiments_manager.experiment import Experiment, running_command
    from experiments_manager.federated.config import FederationConfig
    from experiments_manager.federated.grid import ResponsiveGrid
    from experiments_manager.federated.server import FederationServer, FederationStopped, supervised_strategy

    settings = job.load_settings()
    config = FederationConfig.from_settings(settings, rounds=job.rounds, num_clients=job.num_clients)
    if job.round_timeout:
        config.round_timeout = job.round_timeout
    if job.experiment_dir and Path(job.experiment_dir, "run.json").is_file():
        experiment = Experiment.open(job.experiment_dir)
    else:  # `flwr run` without our CLI, or a SuperLink host that does not share the CLI's file system
        experiment = Experiment.create(settings, running_command(), root=job.experiment_dir or None)
        job.experiment_dir = str(experiment.root)
    experiment.update_run_info(federated=_description(config))
    _LOG.info("Federation %s; server experiment folder: %s", config.describe(), experiment.root)
    server = FederationServer(experiment, settings, config)
    try:
        supervised_strategy(config, server).start(
            grid=ResponsiveGrid(grid),
            initial_arrays=server.initial_arrays(),
            num_rounds=config.rounds,
            timeout=config.round_timeout,
            train_config=ConfigRecord({LOCAL_EPOCHS_KEY: settings.training.epochs}),
            evaluate_fn=server.evaluate,
        )
    except FederationStopped as stop:
        experiment.mark_ended("failed", error=str(stop))
        _LOG.error("Federation stopped: %s", stop)
        return
    except BaseException as error:
        experiment.mark_ended("failed", error=f"{type(error).__name__}: {error}")
        raise
    finally:
        server.finish()
    experiment.mark_ended("finished")


def _partition(node_config):
    from experiments_manager.utils.errors import UserInputError
    from experiments_manager.inputs import DataPartition

    try:
        return DataPartition(int(node_config["partition-id"]), int(node_config["num-partitions"]))
    except (KeyError, ValueError):
        raise UserInputError(
            f"SuperNode node config {dict(node_config)}: expected partition-id and num-partitions, "
            "e.g. flower-supernode --node-config 'partition-id=0 num-partitions=2'"
        ) from None


def _description(config):
    return {"strategy": config.strategy_name, "parameters": config.strategy_parameters, "minCl": config.min_clients,
            "minFit": config.min_fit, "minEval": config.min_eval, "rounds": config.rounds,
            "round_timeout_secs": config.round_timeout}
