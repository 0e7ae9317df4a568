"""`federated run`: submits a federation to a running SuperLink with Flower's own `flwr run`, follows it, reports.

The SuperLink runs the ServerApp, each SuperNode (one per data holder,
`--node-config "partition-id=I num-partitions=N"`) runs the ClientApp. The app
folder written here holds `pyproject.toml` (components and run config), a
two-line module and copies of the settings and model files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional, Union, cast

from experiments_manager.utils.command_name import command_name
from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.federated.job import FederatedJob
    from experiments_manager.federated.stopping import StopRequest
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings.loader import Settings
    from experiments_manager.utils.atomic import PathLike

_LOG = logging.getLogger(__name__)
APP_FOLDER = "flower_app"
APP_MODULE = "em_federation"
CONNECTION_NAME = "experiments-manager"
FINISHED = "finished"
SERVER_LOG = "flower_server.log"  # the ServerApp's log, as `flwr log` streams it (an earlier run's: its id added)
STATUS_POLL_SECONDS = 5.0  # each `flwr ls` is a Python process: asking every second slows a 2-core node
STREAM_CHECK_SECONDS = 0.5  # how often the wait looks whether the log stream ended (a `poll`, no process)
STREAM_END_SECONDS = 30.0  # a stopped run's log stream, given this long to end by itself
# Flower's own switches: no telemetry, no update check, no `uv sync` of app dependencies (offline clusters).
FLOWER_ENVIRONMENT = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
                      "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}
# How often a SuperExec (one per SuperLink and SuperNode) asks for work to start an app process for (Flower's
# default: 1 s; its minimum, 0.01 s). Set in the environment, FLWR_SUPEREXEC_TASK_POLL_INTERVAL wins. 0.1 s: an app
# process starts 0.05 s after its work arrives on average; at 0.01 s (0.005 s) the polls of a SuperLink and two
# SuperNodes kept 0.6-0.8 of a core busy while idle (0.13 at 0.1 s) and doubled the CPU a round costs
# (tools/bench_federated.py --superexec-poll, BENCHMARKS.md).
SUPEREXEC_POLL_VARIABLE = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"
SUPEREXEC_POLL_SECONDS = "0.1"


def flower_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """`environment` with Flower's switches (`FLOWER_ENVIRONMENT`) and the SuperExec poll (unless it sets one)."""
    return {SUPEREXEC_POLL_VARIABLE: SUPEREXEC_POLL_SECONDS, **environment, **FLOWER_ENVIRONMENT}


def deploy(settings_path: Union[PathLike, Settings], superlink: Optional[str] = None, connection: Optional[str] = None,
           rounds: Optional[int] = None, hparam_overrides: Optional[Mapping[str, Any]] = None,
           round_timeout: Optional[float] = None, timeout: Optional[float] = None,
           command: Optional[list[str]] = None, mlflow: Optional[str] = None) -> Experiment:
    """Runs a federation on a running SuperLink and its SuperNodes; returns the server `Experiment`.

    Args:
        settings_path: the settings module.
        superlink: 'host:port' of an insecure SuperLink; or
        connection: the name of a SuperLink connection in the user's Flower config.
        rounds, hparam_overrides, round_timeout: as for `simulate`.
        timeout: seconds before the run is stopped (None: no limit).
        command: the command line recorded in run.json.
        mlflow: as for `simulate` (the ServerApp logs where it sees the server folder's run.json).

    Example:

    ```python
    experiment = deploy("examples/federated/mysettings_federated_curve_fitting.py", superlink="127.0.0.1:8000")
    ```
    """
    from experiments_manager.federated.job import start_federation

    if superlink:
        _check_answers(superlink)  # before any folder exists
    settings, _, experiment, job = start_federation(settings_path, hparam_overrides, rounds, round_timeout, command,
                                                    mlflow=mlflow)
    return _run_on_superlink(experiment, job, settings, superlink, connection, timeout)


def resume_deployment(experiment: Experiment, superlink: Optional[str] = None, connection: Optional[str] = None,
                      rounds: Optional[int] = None, timeout: Optional[float] = None,
                      command: Optional[list[str]] = None) -> Experiment:
    """Continues a deployed federation in its folder from its last recorded round, as a new Flower run on a running
    SuperLink (the one it ran on, restarted, or another whose SuperNodes hold the same partitions); returns the
    server `Experiment`. Its clients continue their folders where the SuperNodes see them.

    Args:
        experiment: the federation's server folder, opened (its code trusted: `Experiment.refuse_foreign_code`).
        superlink, connection, timeout: as for `deploy`.
        rounds: the rounds in all (default None: those it planned); more than it planned extends a finished one.
        command: the command line recorded in the new attempt (default: this process').

    Raises:
        UserInputError: what cannot be continued, in one line, before anything is written: a simulated federation,
            one with rounds recorded but no checkpoint, `rounds` not above the rounds done, a SuperLink that does not
            answer.

    Example:

    ```python
    resume_deployment(Experiment.open("experiments/fed_2026-11-28--10-00-00"), superlink="127.0.0.1:8000")
    ```
    """
    from experiments_manager.federated.job import resumed_job

    job = resumed_job(experiment, deployed=True, rounds=rounds, command=command,
                      before_writing=lambda: _check_answers(superlink) if superlink else None)
    if job is None:
        return experiment
    earlier_log = experiment.root / SERVER_LOG
    if earlier_log.is_file():  # the earlier Flower run's ServerApp log, kept under its run id (not yet replaced)
        earlier_log.replace(experiment.root / f"flower_server-{experiment.run_info().get('flower_run_id')}.log")
    return _run_on_superlink(experiment, job, job.load_settings(), superlink, connection, timeout)


def _run_on_superlink(experiment: Experiment, job: FederatedJob, settings: Settings, superlink: Optional[str],
                      connection: Optional[str], timeout: Optional[float]) -> Experiment:
    """Submits `job`'s app, follows the run to its end and records how it ended when its ServerApp could not."""
    from experiments_manager.federated.job import end_if_running
    from experiments_manager.federated.stopping import stop_on_signals
    from experiments_manager.run.endings import ending_of, failed, finished

    with stop_on_signals() as stop:
        try:
            status = submit_and_follow(experiment, write_flower_app(experiment, job, settings), superlink,
                                       connection, timeout, stop)
        except BaseException as error:  # through the endings table: a full disk is `interrupted`, 75, as for a run
            ending = ending_of(error)
            if ending is not None:
                end_if_running(experiment, ending)
            raise
    if stop.is_set():  # stopped on the SuperLink: the signal says why (unless it finished meanwhile)
        end_if_running(experiment, stop.ending(experiment.run_info().get("rounds_completed")), only_if_running=False)
    elif status == "finished:completed":
        end_if_running(experiment, finished())
    else:
        end_if_running(experiment, failed(f"Flower run {status}"))
    return experiment


def write_flower_app(experiment: Experiment, job: FederatedJob, settings: Settings) -> Path:
    """Writes `<experiment>/flower_app/`, the Flower app `flwr run` packs and ships; returns its folder."""
    import tomli_w

    folder = experiment.root / APP_FOLDER
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    model_name = Path(job.model_file).name
    shutil.copyfile(job.settings_file, folder / "experiment_settings.py")
    shutil.copyfile(job.model_file, folder / model_name)
    (folder / f"{APP_MODULE}.py").write_text(
        '"""Written by `experiments-manager federated run`: this federation\'s Flower apps."""\n'
        "from pathlib import Path\n\n"
        "from experiments_manager.federated.deployed import client_app_for, server_app_for\n\n"
        "server_app = server_app_for(Path(__file__).resolve().parent)\n"
        "client_app = client_app_for(Path(__file__).resolve().parent)\n"
    )
    run_config = {**job.to_run_config(), "settings-file": "experiment_settings.py", "model-file": model_name}
    project = {
        "build-system": {"requires": ["hatchling"], "build-backend": "hatchling.build"},
        "project": {"name": _project_name(settings.experiment.session_name), "version": "1.0.0",
                    "description": f"federation of {experiment.name}", "license": "MIT", "dependencies": []},
        "tool": {"hatch": {"build": {"targets": {"wheel": {"packages": ["."]}}}},
                 "flwr": {"app": {"publisher": "experiments-manager",
                                  "components": {"serverapp": f"{APP_MODULE}:server_app",
                                                 "clientapp": f"{APP_MODULE}:client_app"},
                                  "config": run_config}}},
    }
    (folder / "pyproject.toml").write_text(tomli_w.dumps(project))
    return folder


def submit_and_follow(experiment: Experiment, app_folder: PathLike, superlink: Optional[str] = None,
                      connection: Optional[str] = None, timeout: Optional[float] = None,
                      stop: Optional[StopRequest] = None) -> str:
    """Starts the run on the SuperLink and waits until Flower says it finished; returns Flower's final status.

    Args:
        experiment: the server `Experiment` (records the Flower run id).
        app_folder: from `write_flower_app`.
        superlink: 'host:port' of an insecure SuperLink (a temporary Flower config names it), or None.
        connection: the name of a SuperLink connection in the user's Flower config (TLS, accounts), or None.
        timeout: seconds to wait before stopping the run (None: no limit).
        stop: a `stopping.StopRequest`: once set, the run is stopped on the SuperLink (default None).
    """
    with _flower_config(superlink) as flower_home:
        env = {**flower_environment(os.environ), **({"FLWR_HOME": flower_home} if flower_home else {})}
        name = CONNECTION_NAME if superlink else connection
        run_id = _start(app_folder, name, env)
        experiment.record.flower_run(run_id, superlink or connection or "")
        _LOG.info("Flower run %s started on %s; server experiment folder: %s", run_id, superlink or connection,
                  experiment.root)
        log_file = experiment.root / SERVER_LOG
        status = _wait(run_id, name, env, timeout, stop, log_file)
        _LOG.info("Flower run %s: %s; ServerApp log: %s", run_id, status, log_file)
        return status


def _start(app_folder: PathLike, name: Optional[str], env: Mapping[str, str]) -> str:
    command = _flwr("run", str(app_folder), *([name] if name else []), "--format", "json")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    try:
        answer = json.loads(result.stdout)
    except ValueError:
        answer = {}
    if not answer.get("success"):
        message = answer.get("error-message") or result.stderr or result.stdout
        raise UserInputError(f"flwr run: the SuperLink did not start the run: {' '.join(message.split())}")
    return str(answer["run-id"])


def _wait(run_id: str, name: Optional[str], env: Mapping[str, str], timeout: Optional[float],
          stop: Optional[StopRequest], log_file: Path) -> str:
    """Waits until the run ends on the SuperLink (or `stop` is set, or `timeout` passes: the run is then stopped);
    returns Flower's final status, the ServerApp's log written to `log_file`.

    One `flwr log --stream` follows the run, writing its log as it comes: the SuperLink ends that stream when the
    run finishes, and one `flwr ls` then reads how. Asking `flwr ls` every few seconds instead (each a Python
    process, ~1 CPU-s) kept a fifth of a core busy for the whole run. A stream that ends while the run goes on (the
    SuperLink restarted, a dropped connection) leaves the wait to `flwr ls` every STATUS_POLL_SECONDS, the log then
    written once at the end."""
    deadline = None if timeout is None else time.monotonic() + timeout
    connection = [name] if name else []
    with open(log_file, "w") as handle:
        streaming: Optional[subprocess.Popen[bytes]] = subprocess.Popen(
            _flwr("log", run_id, *connection, "--stream"), env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        status = "unknown"
        while deadline is None or time.monotonic() < deadline:
            if stop is not None and stop.is_set():
                _stop_run(run_id, name, env)
                return f"stopped ({signal.Signals(cast(int, stop.signum)).name})"  # set with the stop
            if streaming is None or streaming.poll() is not None:  # (the run's end, most likely: ask how)
                status = _listed_status(run_id, name, env) or status
                if status.startswith(FINISHED):
                    return status
                if streaming is not None:  # it ended early: asked from now on, the log written at the end
                    streaming = None
                    _LOG.info("Flower run %s: its log stream ended before the run; asking its status every %g s",
                              run_id, STATUS_POLL_SECONDS)
            wait = STREAM_CHECK_SECONDS if streaming is not None else STATUS_POLL_SECONDS
            if stop is not None:
                stop.wait(wait)  # (less when a stop is requested meanwhile)
            else:
                time.sleep(wait)
        _stop_run(run_id, name, env)
        return f"stopped after {timeout:g} s (--timeout)"
    finally:
        if streaming is not None and streaming.poll() is None:  # a stopped run's stream ends soon after
            try:
                streaming.wait(timeout=STREAM_END_SECONDS)
            except subprocess.TimeoutExpired:
                streaming.kill()
                streaming.wait()
        if streaming is None:
            with open(log_file, "w") as handle:
                subprocess.run(_flwr("log", run_id, *connection, "--show"), env=env, stdout=handle,
                               stderr=subprocess.STDOUT, timeout=60)


def _listed_status(run_id: str, name: Optional[str], env: Mapping[str, str]) -> Optional[str]:
    """The run's status as `flwr ls` gives it ('finished:completed', 'running', ...), or None when the SuperLink
    did not say (busy: ask again)."""
    listing = subprocess.run(_flwr("ls", *([name] if name else []), "--run-id", run_id, "--format", "json"),
                             env=env, capture_output=True, text=True, timeout=60)
    try:
        return str(json.loads(listing.stdout)["runs"][0]["status"])
    except (ValueError, KeyError, IndexError):
        return None


def _stop_run(run_id: str, name: Optional[str], env: Mapping[str, str]) -> None:
    """`flwr stop` of the run on its SuperLink."""
    subprocess.run(_flwr("stop", run_id, *([name] if name else [])), env=env, capture_output=True, timeout=60)


def _check_answers(superlink: str) -> None:
    """One clear line when `superlink` is not HOST:PORT or nothing listens there."""
    host, _, port = superlink.rpartition(":")
    if not host or not port.isdigit():
        raise UserInputError(f"--superlink: expected HOST:PORT, got {superlink!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as error:
        raise UserInputError(f"--superlink {superlink}: no SuperLink answers there ({error.strerror or error}); "
                             f"start one with `{command_name()} federated superlink`") from None


def _flwr(*arguments: str) -> list[str]:
    return [flower_program("flwr"), *arguments]


def flower_program(name: str) -> str:
    """A Flower command of this environment (the venv's, even when its bin folder is not on PATH)."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name) or name


@contextlib.contextmanager
def _flower_config(superlink: Optional[str]) -> Iterator[Optional[str]]:
    """A temporary FLWR_HOME whose config.toml names the insecure SuperLink at `superlink` (None: the user's own)."""
    if not superlink:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="experiments-manager-flwr-") as folder:
        Path(folder, "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION_NAME}"\n\n'
            f'[superlink.{CONNECTION_NAME}]\naddress = "{superlink}"\ninsecure = true\n'
        )
        yield folder


def _project_name(session_name: str) -> str:
    cleaned = "".join(character if character.isalnum() else "-" for character in session_name.lower()).strip("-")
    return f"em-{cleaned or 'federation'}"
