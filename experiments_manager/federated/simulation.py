"""`federated simulate`: N clients on this machine through Flower's simulation engine (Ray)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Union

from experiments_manager.utils.cpus import usable_cpus

if TYPE_CHECKING:
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    from experiments_manager.federated.job import FederatedJob
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.federated.stopping import StopRequest
    from experiments_manager.settings.loader import Settings
    from experiments_manager.utils.atomic import PathLike

_LOG = logging.getLogger(__name__)


def simulate(settings: Union[PathLike, Settings], num_clients: Optional[int] = None, rounds: Optional[int] = None,
             hparam_overrides: Optional[Mapping[str, Any]] = None, round_timeout: Optional[float] = None,
             command: Optional[list[str]] = None, mlflow: Optional[str] = None,
             on_created: Optional[Callable[[Experiment], object]] = None, init_from: Optional[str] = None,
             skip_mismatch: bool = False, trust_code: bool = False) -> Experiment:
    """Runs a federation of `num_clients` simulated clients; returns the server `Experiment`.

    Everything is checked before the experiment folder is created. The server's
    experiment folder holds the clients' folders (`clients/client_<id>/`). SIGINT, SIGTERM and SIGUSR1 end it
    within seconds, `interrupted`, run.json's `exit_code` 128 + signal (`stopping.py`), also when the signal
    reached Ray's processes too (a scheduler's `scancel`: `ray_gone.py`).

    Args:
        settings: the settings module, or its loaded `Settings`.
        num_clients: simulated clients (Flower SuperNodes), partition ids 0..N-1
            (default: `hparams['minCl']`, else 2).
        rounds: `--rounds` (default: the settings' `hparams['rounds']`).
        hparam_overrides: dict of `--hparam` overrides, for the server and every client.
        round_timeout: seconds a round may wait for clients (default: `federated_round_timeout_secs`).
        command: the command line recorded in run.json.
        mlflow: log the federation's server run to this MLflow server ('': MLFLOW_TRACKING_URI; default None: the
            settings' `mlflow_tracking_uri`, else not logged).
        on_created: called with the server's `Experiment` once its folder is made (default None; `--requeue-file`
            remembers it there, so a requeued job resumes the federation).
        init_from: the version the global model starts from, `RUN` or `RUN:VERSION` (default None: the model's
            own initial weights), matched and reported as `train --init-from`'s; `skip_mismatch`, `trust_code`: as
            there.

    Example:

    ```python
    experiment = simulate("examples/federated/mysettings_federated_curve_fitting.py", num_clients=3, rounds=2)
    experiment.run_info()["status"]   # 'finished'
    ```
    """
    from experiments_manager.federated.job import start_federation

    _, config, experiment, job = start_federation(settings, hparam_overrides, rounds, round_timeout, command,
                                                  num_clients=num_clients, mlflow=mlflow, init_from=init_from,
                                                  skip_mismatch=skip_mismatch, trust_code=trust_code)
    _LOG.info("Experiment folder: %s", experiment.root)
    if on_created is not None:
        on_created(experiment)
    job.num_clients = num_clients or config.min_clients  # without --num-clients, minCl (its default, 2, when unset)
    return _simulated(experiment, job)


def resume_simulation(experiment: Experiment, rounds: Optional[int] = None,
                      command: Optional[list[str]] = None) -> Experiment:
    """Continues a simulated federation in its folder from its last recorded round (`server_checkpoint.py`) to its
    planned rounds, or to `rounds` in all; returns the server `Experiment`. Its clients continue their folders.

    Args:
        experiment: the federation's server folder, opened (its code trusted: `Experiment.refuse_foreign_code`).
        rounds: the rounds in all (default None: those it planned); more than it planned extends a finished one.
        command: the command line recorded in the new attempt (default: this process').

    Raises:
        UserInputError: what cannot be continued, in one line, before anything is written: a deployed federation,
            one with rounds recorded but no checkpoint (an earlier engine's), `rounds` not above the rounds done.

    Example:

    ```python
    resume_simulation(Experiment.open("experiments/fed_2026-11-28--10-00-00"))        # rounds 3..5 of 5
    resume_simulation(Experiment.open("experiments/fed_2026-11-28--10-00-00"), 8)     # a finished one, to 8
    ```
    """
    from experiments_manager.federated.job import resumed_job

    job = resumed_job(experiment, deployed=False, rounds=rounds, command=command)
    return experiment if job is None else _simulated(experiment, job)


def _simulated(experiment: Experiment, job: FederatedJob) -> Experiment:
    """Runs `job` through Flower's simulation engine, its `num_clients` clients on this machine, until the
    federation ends; records how it ended when its ServerApp could not."""
    from experiments_manager.federated.apps import client_app, server_app
    from experiments_manager.federated.job import end_if_running
    from experiments_manager.federated.ray_gone import exit_when_ray_stops
    from experiments_manager.federated.stopping import stop_on_signals
    from experiments_manager.run.endings import ending_of, failed

    num_clients = job.num_clients or 2
    backend_config = _backend_config(num_clients)
    with stop_on_signals() as stop:  # first: a signal while Ray starts is a stop too
        try:
            _init_ray(backend_config["init_args"], stop)
            with stop_on_signals(stop), exit_when_ray_stops(stop, experiment):  # after ray.init's own handler
                if not stop.is_set():
                    _run(server_app(lambda context: job, stop), client_app(lambda context: job), num_clients,
                         backend_config)
        except BaseException as error:  # through the endings table: a full disk is `interrupted`, 75, as for a run
            ending = ending_of(error)
            if not stop.is_set() and ending is not None:
                end_if_running(experiment, ending)
            raise
        finally:
            if stop.is_set():  # the server recorded it; a stop before its first poll is recorded here
                end_if_running(experiment, stop.ending(experiment.run_info().get("rounds_completed")))
    end_if_running(experiment, failed("the Flower simulation ended before the federation did"))
    return experiment


def _backend_config(num_clients: int) -> dict[str, dict[str, Any]]:
    """Flower's Ray backend: one client at a time per CPU this process may run on (a Slurm job's, not its node's),
    and never more Ray workers than clients (Flower starts one per CPU Ray is given: each imports TensorFlow, ~5
    CPU-s, and a one-client simulation on 2 CPUs started an idle second one)."""
    cpus = max(1, min(usable_cpus(), num_clients))
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "num_gpus": 0, "logging_level": "ERROR", "log_to_driver": True,
                      "include_dashboard": False},
    }


def _init_ray(init_args: Mapping[str, Any], stop: StopRequest) -> None:
    """Starts Ray as Flower's Ray backend would (the same arguments, this process' import path given to its
    workers); Flower then uses it as it is. A SIGTERM while it starts is a stop (`ray.init`'s own handler exits)."""
    import ray

    if ray.is_initialized():
        return
    path = os.pathsep.join(sys.path + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    os.environ["PYTHONPATH"] = path
    try:
        ray.init(runtime_env={"env_vars": {"PYTHONPATH": path}}, **init_args)
    except SystemExit as exiting:  # ray.init's handler: sys.exit(SIGTERM)
        if exiting.code != signal.SIGTERM:
            raise
        stop.request(signal.SIGTERM)


def _run(server: ServerApp, client: ClientApp, num_clients: int, backend_config: dict[str, dict[str, Any]]) -> None:
    from flwr.simulation import run_simulation

    run_simulation(server_app=server, client_app=client, num_supernodes=num_clients, backend_config=backend_config)
