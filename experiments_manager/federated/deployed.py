"""The ServerApp and ClientApp that `flwr run` starts on a SuperLink and its SuperNodes.

`experiments-manager federated run` writes a Flower app folder whose module
(`em_federation.py`) builds them from its own folder; the folder also carries
the settings and model files, so SuperNodes need no shared file system to load them.
"""

from pathlib import Path


def server_app_for(app_dir):
    """The `ServerApp` of the Flower app in `app_dir`, reading its `FederatedJob` from the run config."""
    from experiments_manager.federated.apps import server_app

    return server_app(_job_reader(app_dir))


def client_app_for(app_dir):
    """The `ClientApp` of the Flower app in `app_dir`, reading its `FederatedJob` from the run config."""
    from experiments_manager.federated.apps import client_app

    return client_app(_job_reader(app_dir))


def _job_reader(app_dir):
    from experiments_manager.federated.job import FederatedJob

    return lambda context: FederatedJob.from_run_config(context.run_config, Path(app_dir))
