"""What the ServerApp and the ClientApps of one federation need to know, carried as Flower run config."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Union

from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.federated.federation_config import FederationConfig
    from experiments_manager.run.endings import Ending
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings.loader import Settings
    from experiments_manager.training.fine_tuning import InitialWeights
    from experiments_manager.utils.atomic import PathLike

_LOG = logging.getLogger(__name__)
SERVER_APP_END_SECONDS = 60.0  # a stopped Flower run's ServerApp records its end and lets its folder go within this
RunConfig = dict[str, Union[str, int, float]]  # a `flwr run` config: flat str/int/float values


class FederatedJob:
    """One federation: its settings and model files, hparam overrides and server experiment folder.

    In simulation the apps get the job directly; in deployment it travels as the
    run config of `flwr run` (flat str/int/float values), and relative files are
    resolved against the Flower app folder the SuperLink and SuperNodes unpacked.

    Args:
        settings_file: the settings module (the server experiment's copy).
        model_file: the model file (the server experiment's copy).
        hparam_overrides: dict of `--hparam` overrides.
        experiment_dir: the server's experiment folder ('' lets the ServerApp create one).
        rounds: `--rounds`, or None for the settings' `hparams['rounds']`.
        round_timeout: `--round-timeout` in seconds, or None for the settings' `federated_round_timeout_secs`.
        num_clients: the simulated clients (`--num-clients`; minCl defaults to it), or None in deployment.
        init_from: the version the global model starts from, `RUN` or `RUN:VERSION` (`--init-from`; default None:
            the model's own initial weights); `skip_mismatch` and `trust_code`: as `training.fine_tuning`'s.

    Example:

    ```python
    job = FederatedJob("exp/experiment_settings.py", "exp/model.py", {"nbEpoch": 1}, "exp", rounds=2)
    FederatedJob.from_run_config(job.to_run_config())
    ```
    """

    def __init__(self, settings_file: PathLike, model_file: PathLike, hparam_overrides: Optional[Mapping[str, Any]],
                 experiment_dir: Optional[PathLike], rounds: Optional[int] = None,
                 round_timeout: Optional[float] = None, num_clients: Optional[int] = None,
                 init_from: Optional[str] = None, skip_mismatch: bool = False, trust_code: bool = False) -> None:
        self.settings_file = str(settings_file)
        self.model_file = str(model_file)
        self.hparam_overrides = dict(hparam_overrides or {})
        self.experiment_dir = str(experiment_dir or "")
        self.rounds = rounds
        self.round_timeout = round_timeout
        self.num_clients = num_clients
        self.init_from = init_from
        self.skip_mismatch = skip_mismatch
        self.trust_code = trust_code

    def initial_weights(self) -> Optional[InitialWeights]:
        """The version the global model starts from (`InitialWeights`, checked), or None."""
        return initial_weights(self.init_from, self.skip_mismatch, self.trust_code)

    def to_run_config(self) -> RunConfig:
        return {
            "settings-file": self.settings_file,
            "model-file": self.model_file,
            "hparam-overrides": json.dumps(self.hparam_overrides),
            "experiment-dir": self.experiment_dir,
            "rounds": self.rounds or 0,
            "round-timeout": float(self.round_timeout or 0),
            "num-clients": self.num_clients or 0,
            "init-from": self.init_from or "",
            "skip-mismatch": int(self.skip_mismatch),
            "trust-code": int(self.trust_code),
        }

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any], app_dir: Optional[PathLike] = None) -> FederatedJob:
        """The job of a `flwr run`; relative files are taken from `app_dir`."""
        try:
            settings_file, model_file = run_config["settings-file"], run_config["model-file"]
            overrides = json.loads(run_config.get("hparam-overrides") or "{}")
        except (KeyError, ValueError) as error:
            raise UserInputError(f"flwr run config: expected settings-file, model-file and hparam-overrides "
                                 f"(JSON) as written by `experiments-manager federated run`: {error}") from None
        if app_dir is not None:
            settings_file, model_file = (str(Path(app_dir, path)) for path in (settings_file, model_file))
        return cls(settings_file, model_file, overrides, run_config.get("experiment-dir", ""),
                   rounds=int(run_config.get("rounds") or 0) or None,
                   round_timeout=float(run_config.get("round-timeout") or 0) or None,
                   num_clients=int(run_config.get("num-clients") or 0) or None,
                   init_from=str(run_config.get("init-from") or "") or None,
                   skip_mismatch=bool(run_config.get("skip-mismatch")), trust_code=bool(run_config.get("trust-code")))

    def load_settings(self, extra_overrides: Optional[Mapping[str, Any]] = None) -> Settings:
        """The settings with this job's overrides, plus `extra_overrides` (a client's `procID`)."""
        from experiments_manager.settings import load_settings

        return load_settings(self.settings_file, {**self.hparam_overrides, **(extra_overrides or {})},
                             model_file=self.model_file)


def initial_weights(init_from: Optional[str], skip_mismatch: bool = False,
                    trust_code: bool = False) -> Optional[InitialWeights]:
    """The version `init_from` names (`RUN` or `RUN:VERSION`), checked as `train --init-from` checks it, or None.

    Raises:
        UserInputError: `skip_mismatch` without `init_from`; not a run, no such version (one line).
    """
    from experiments_manager.training.fine_tuning import SKIP_MISMATCH_OPTION, InitialWeights

    if skip_mismatch and not init_from:
        raise UserInputError(f"{SKIP_MISMATCH_OPTION}: only with --init-from RUN (the weights it loads)")
    return InitialWeights.parse(init_from, skip_mismatch, trust_code) if init_from else None


def start_federation(settings: Union[PathLike, Settings], hparam_overrides: Optional[Mapping[str, Any]] = None,
                     rounds: Optional[int] = None, round_timeout: Optional[float] = None,
                     command: Optional[list[str]] = None, num_clients: Optional[int] = None,
                     mlflow: Optional[str] = None, init_from: Optional[str] = None, skip_mismatch: bool = False,
                     trust_code: bool = False) -> tuple[Settings, FederationConfig, Experiment, FederatedJob]:
    """Checks the settings and the federation hparams, then creates the server experiment (with the MLflow server
    its ServerApp logs to: `mlflow`, as `train --mlflow`, else the settings').

    Nothing is written when a check fails (UserInputError).

    Args:
        settings: the settings file, or its loaded `Settings` (see `settings.as_settings`).
        mlflow: log the federation to this MLflow server ('': MLFLOW_TRACKING_URI; default None: the settings').
        init_from, skip_mismatch, trust_code: the version the global model starts from (`FederatedJob`'s).

    Returns:
        (settings, `FederationConfig`, server `Experiment`, `FederatedJob` pointing at the experiment's copies).
    """
    from experiments_manager.run.experiment import Experiment, running_command
    from experiments_manager.federated.federation_config import FederationConfig
    from experiments_manager.settings import as_settings
    from experiments_manager.tracking.session import record_server
    from experiments_manager.training.entry_points import tracking_of

    settings = as_settings(settings, hparam_overrides)
    if settings.kafka.enabled:  # the clients would refuse it only once the federation runs (inputs.make_inputs)
        from experiments_manager.settings.sections import user_name

        raise UserInputError(f"{settings.path.name}: {user_name('kafka', 'enabled')}: not supported in federated "
                             "training yet (expected False with enable_federated_learning)")
    config = FederationConfig.from_settings(settings, rounds=rounds, num_clients=num_clients)
    tracking_at = tracking_of(settings, mlflow)
    weights = initial_weights(init_from, skip_mismatch, trust_code)  # a source that is no run: said before the folder
    if weights is not None:                                            # exists, and so is one the model cannot take
        _check_warm_start(settings, weights)
    experiment = Experiment.create(settings, command or running_command())
    if tracking_at is not None:
        record_server(experiment, tracking_at, settings.tracking.mlflow_experiment,
                      settings.tracking.mlflow_registered_model)
    job = FederatedJob(experiment.settings_copy, experiment.model_file_copy(), settings.overrides,
                       experiment.root.resolve(), rounds=rounds, round_timeout=round_timeout, num_clients=num_clients,
                       init_from=init_from, skip_mismatch=skip_mismatch, trust_code=trust_code)
    return settings, config, experiment, job


def _check_warm_start(settings: Settings, weights: InitialWeights) -> None:
    """Refuses, in one line and before the server's folder exists, a version the global model cannot take (no block
    of it in the version; without `--skip-mismatch`, weights the version does not give), as `train --init-from`
    does: the server's model is built and the version read into it once here (the ServerApp reads it again)."""
    from experiments_manager.training import compile_for_evaluation
    from experiments_manager.training.model import keras_names_kept

    with keras_names_kept():
        weights.load_into(compile_for_evaluation(settings), settings)


def resumed_job(experiment: Experiment, deployed: bool, rounds: Optional[int] = None,
                command: Optional[list[str]] = None, before_writing: Callable[[], object] = lambda: None
                ) -> Optional[FederatedJob]:
    """A federation's resume up to its start, for a simulated and a deployed one alike: its folder's code trusted,
    its kind checked (the other kind's resume named in one line), its rounds (`_resumed_rounds`), then
    `before_writing` (a deployment asks its SuperLink), the new attempt recorded. Returns the `FederatedJob` that
    continues it, or None when it finished and nothing more is asked.

    Args:
        experiment: the federation's server folder, opened.
        deployed: a `federated run` resume (else `federated simulate --resume`, `train --resume`).
        rounds: the rounds in all (default None: those it planned).
        command: the command line recorded in the new attempt (default: this process').
        before_writing: what must pass before anything is written (default: nothing).

    Raises:
        UserInputError: what cannot be continued, before anything is written.
    """
    from experiments_manager.run.experiment import running_command
    from experiments_manager.run.lifecycle import attempt, resumed
    from experiments_manager.training.fine_tuning import InitialWeights

    experiment.refuse_foreign_code()
    info = experiment.run_info()
    described = info.get("federated") or {}
    flower_run = info.get("flower_run_id")
    if flower_run is not None and not deployed:
        raise UserInputError(f"{experiment.root}: a deployed federation (Flower run {flower_run}): expected a "
                             f"simulated one; resume it on a SuperLink with `federated run --resume {experiment.root} "
                             "--superlink HOST:PORT`")
    if flower_run is None and deployed:
        raise UserInputError(f"{experiment.root}: a simulated federation: expected a deployed one; resume it with "
                             f"`federated simulate --resume {experiment.root}`")
    span = _resumed_rounds(experiment, info, rounds)
    if span is None:
        return None
    before_writing()
    done, planned = span
    command = command or running_command()
    with attempt(experiment, command, console=False, records_ending=False):
        resumed(experiment, command)
    _LOG.info("Resuming %s after round %d of %s", experiment.root, done, planned)
    # killed in its first round, before any checkpoint: a warm start starts again from its version
    initial = InitialWeights.recorded(info) if done == 0 else None
    return FederatedJob(experiment.settings_copy, experiment.model_file_copy(), info.get("hparam_overrides"),
                        experiment.root.resolve(), rounds=planned, round_timeout=described.get("round_timeout_secs"),
                        num_clients=None if deployed else described.get("num_clients") or described.get("minCl"),
                        init_from=f"{initial.run}:{initial.version}" if initial is not None else None,
                        skip_mismatch=initial is not None and initial.skip_mismatch, trust_code=experiment.trust_code)


def _resumed_rounds(experiment: Experiment, info: Mapping[str, Any], rounds: Optional[int]
                    ) -> Optional[tuple[int, Optional[int]]]:
    """(the rounds done, the rounds in all: `rounds`, else those it planned, else None: the settings' when its
    ServerApp never recorded them, stopped while starting), or None when it finished its planned rounds and no
    `rounds` asks for more (said in a line).

    Raises:
        UserInputError: rounds recorded but no checkpoint of the global model (an earlier engine's federation), or
            `rounds` not above the rounds done.
    """
    from experiments_manager.federated.server_checkpoint import read_checkpoint
    from experiments_manager.run.record import Status

    planned = (info.get("federated") or {}).get("rounds")
    checkpoint = read_checkpoint(experiment)
    done = checkpoint.rounds if checkpoint is not None else 0
    if info.get("rounds_completed") and checkpoint is None:
        raise UserInputError(f"{experiment.root}: {info.get('rounds_completed')} rounds recorded but no checkpoint "
                             "of the global model (an earlier engine's federation): it cannot continue; start a new "
                             "one")
    if rounds is not None and rounds <= done:
        raise UserInputError(f"{experiment.root}: --rounds: expected more than the {done} rounds it has done, got "
                             f"{rounds}")
    if info.get("status") == Status.FINISHED and rounds is None:
        _LOG.info("%s already finished its %s rounds: nothing to resume (extend it with --rounds R)",
                  experiment.root, planned)
        return None
    return done, rounds or planned


def end_if_running(experiment: Experiment, ending: Ending, only_if_running: bool = True,
                   wait_seconds: float = SERVER_APP_END_SECONDS) -> None:
    """Records how a federation ended when its ServerApp could not (it crashed, was stopped, or ran on another
    host), as the folder's one writer: once a ServerApp still ending (a stopped Flower run's) has let it go, for up
    to `wait_seconds`; a ServerApp still writing then records its own ending.

    Args:
        experiment: the federation's server `Experiment`.
        ending: the `endings.Ending` to record.
        only_if_running: record it only while run.json says running (default True; False: unless finished, as the
            signal that stopped a deployed run says better than the ServerApp's "stopped by Flower").
        wait_seconds: how long to wait for the ServerApp to let the folder go (default `SERVER_APP_END_SECONDS`).
    """
    from experiments_manager.run.experiment import running_command
    from experiments_manager.run.lifecycle import attempt, record_ending
    from experiments_manager.run.record import Status
    from experiments_manager.tracking.session import send_recorded_end
    from experiments_manager.utils.lease import LEASE_NAME, LeaseHeld
    from experiments_manager.utils.lease_holder import live_holder

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with attempt(experiment, running_command(), console=False, records_ending=False):
                status = experiment.run_info().get("status")
                if status == Status.RUNNING or (not only_if_running and status != Status.FINISHED):
                    record_ending(experiment, ending)
                    send_recorded_end(experiment)  # its MLflow run, if any, ends too
            return
        except LeaseHeld as held:
            if time.monotonic() >= deadline:  # the ServerApp still writes it: it records how it ends
                _LOG.warning("%s", held)
                return
            # until it lets the folder go or is gone (force-exited by Flower, maybe not yet reaped)
            time.sleep(0.2)
            while live_holder(experiment.root / LEASE_NAME) is not None and time.monotonic() < deadline:
                time.sleep(0.2)
