"""The ServerApp and ClientApp that `flwr run` starts on a SuperLink and its SuperNodes.

`experiments-manager federated run` writes a Flower app folder whose module
(`em_federation.py`) builds them from its own folder; the folder also carries
the settings and model files, so SuperNodes need no shared file system to load them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from flwr.app import Context
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    from experiments_manager.federated.job import FederatedJob
    from experiments_manager.utils.atomic import PathLike


def server_app_for(app_dir: PathLike) -> ServerApp:
    """The `ServerApp` of the Flower app in `app_dir`, reading its `FederatedJob` from the run config."""
    from experiments_manager.federated.apps import server_app

    return server_app(_job_reader(app_dir))


def client_app_for(app_dir: PathLike) -> ClientApp:
    """The `ClientApp` of the Flower app in `app_dir`, reading its `FederatedJob` from the run config.

    On a SuperNode started by `experiments-manager federated supernode` (its worker folder is in the
    environment) the ClientApp hands each message to the SuperNode's persistent worker; on one started
    otherwise (plain `flower-supernode`) it trains in its own process, importing TensorFlow for each message.
    """
    from experiments_manager.federated.apps import client_app, worker_client_app
    from experiments_manager.federated.worker_protocol import FOLDER_VARIABLE

    worker_folder = os.environ.get(FOLDER_VARIABLE)
    if worker_folder:
        return worker_client_app(worker_folder, Path(app_dir))
    return client_app(_job_reader(app_dir))


def _job_reader(app_dir: PathLike) -> Callable[[Context], FederatedJob]:
    from experiments_manager.federated.job import FederatedJob

    return lambda context: FederatedJob.from_run_config(context.run_config, Path(app_dir))
