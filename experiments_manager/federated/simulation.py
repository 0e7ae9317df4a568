"""`federated simulate`: N clients on this machine through Flower's simulation engine (Ray)."""

import logging
import os

_LOG = logging.getLogger(__name__)


def simulate(settings, num_clients=None, rounds=None, hparam_overrides=None, round_timeout=None, command=None):
    """Runs a federation of `num_clients` simulated clients; returns the server `Experiment`.

    Everything is checked before the experiment folder is created. The server's
    experiment folder holds the clients' folders (`clients/client_<id>/`).

    Args:
        settings: the settings module, or its loaded `Settings`.
        num_clients: simulated clients (Flower SuperNodes), partition ids 0..N-1
            (default: `hparams['minCl']`, else 2).
        rounds: `--rounds` (default: the settings' `hparams['rounds']`).
        hparam_overrides: dict of `--hparam` overrides, for the server and every client.
        round_timeout: seconds a round may wait for clients (default: `federated_round_timeout_secs`).
        command: the command line recorded in run.json.

    Example:

    ```python
    experiment = simulate("examples/federated/mysettings_federated_curve_fitting.py", num_clients=3, rounds=2)
    experiment.run_info()["status"]   # 'finished'
    ```
    """
    from experiments_manager.federated.apps import client_app, server_app
    from experiments_manager.federated.job import end_if_running, start_federation

    _, config, experiment, job = start_federation(settings, hparam_overrides, rounds, round_timeout, command,
                                                  num_clients=num_clients)
    _LOG.info("Experiment folder: %s", experiment.root)
    try:  # without --num-clients, minCl clients (its default, 2, when the settings set none)
        _run(server_app(lambda context: job), client_app(lambda context: job), num_clients or config.min_clients)
    except BaseException as error:
        end_if_running(experiment, "failed", f"{type(error).__name__}: {error}")
        raise
    end_if_running(experiment, "failed", "the Flower simulation ended before the federation did")
    return experiment


def _run(server, client, num_clients):
    from flwr.simulation import run_simulation

    cpus = os.cpu_count() or 1
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "num_gpus": 0, "logging_level": "ERROR", "log_to_driver": True,
                      "include_dashboard": False},
    }
    run_simulation(server_app=server, client_app=client, num_supernodes=num_clients, backend_config=backend_config)
