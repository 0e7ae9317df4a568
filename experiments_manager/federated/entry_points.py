"""What `experiments-manager federated simulate|run|superlink|supernode` runs (its parser is
`experiments_manager.commands.federated`), and the simulation `train` runs for a federated settings file.

Importing this module imports neither TensorFlow nor Flower.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Mapping, NoReturn, Optional, Union

from experiments_manager.utils.command_name import command_name

if TYPE_CHECKING:
    import argparse

    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings.loader import Settings
    from experiments_manager.utils.atomic import PathLike

_LOG = logging.getLogger(__name__)


def federated(arguments: argparse.Namespace) -> int:
    """Runs a `federated` sub-command; returns the exit code."""
    from experiments_manager.settings import parse_hparam_overrides

    mode = arguments.federated_command
    if mode in ("superlink", "supernode"):
        return _exec_flower(mode, arguments)
    from experiments_manager.settings.script import existing_settings_file
    from experiments_manager.utils.native_noise import import_tensorflow_quietly

    if arguments.resume:
        values = {flag: getattr(arguments, name, None) for flag, name in (
            ("--hparam", "hparam"), ("--num-clients", "num_clients"), ("--round-timeout", "round_timeout"),
            ("--mlflow", "mlflow"), ("--init-from", "init_from"), ("--skip-mismatch", "skip_mismatch"))}
        # given: anything but the defaults (None, an empty list, an unset switch); 0 is given
        given = [flag for flag, value in values.items() if value is not None and value is not False and value != []]
        if given:
            from experiments_manager.utils.errors import UserInputError

            raise UserInputError(f"{', '.join(given)}: expected none with --resume (the federation goes on as it "
                                 f"started; only --rounds extends it), got {', '.join(given)}")
        if mode == "run":
            return resume_command(arguments.resume, arguments.rounds, arguments.trust_code,
                                  on_superlink=(arguments.superlink, arguments.connection, arguments.timeout))
        return resume_command(arguments.resume, arguments.rounds, arguments.trust_code)

    overrides = parse_hparam_overrides(arguments.hparam)
    existing_settings_file(arguments.usersettings)  # said at once, before TensorFlow is imported
    import_tensorflow_quietly()
    if mode == "simulate":
        return simulate_command(arguments.usersettings, overrides, arguments.num_clients, arguments.rounds,
                                arguments.round_timeout, arguments.mlflow, init_from=arguments.init_from,
                                skip_mismatch=arguments.skip_mismatch, trust_code=arguments.trust_code)
    from experiments_manager.federated.deployment import deploy

    experiment = deploy(arguments.usersettings, superlink=arguments.superlink, connection=arguments.connection,
                        rounds=arguments.rounds, hparam_overrides=overrides, round_timeout=arguments.round_timeout,
                        timeout=arguments.timeout, mlflow=arguments.mlflow)
    return report(experiment)


def _exec_flower(mode: str, arguments: argparse.Namespace) -> NoReturn:
    """Replaces this process by flower-superlink / flower-supernode (so its PID is Flower's).

    A SuperNode first starts the keeper of its persistent worker (`keeper.start_keeper`): TensorFlow is
    imported once, in the worker, and the ClientApps Flower starts for each message hand their work to it
    (the folder of its socket is in their environment). The keeper stops the worker when the SuperNode ends.
    The SuperNode runs Flower's `flower-supernode` with one mend of its loop (`flower_supernode.py`).
    """
    import os
    import sys
    from pathlib import Path

    from experiments_manager.federated.deployment import flower_environment, flower_program

    if mode == "superlink":
        program = "flower-superlink"
        command = ["--host", arguments.host, "--port", str(arguments.port),
                   "--disable-runtime-dependency-installation"]
    else:
        program = "flower-supernode"
        command = ["--superlink", arguments.superlink, "--host", arguments.host, "--port", str(arguments.port),
                   "--node-config", f"partition-id={arguments.partition_id} num-partitions={arguments.num_partitions}"]
    command = (["--insecure"] if arguments.insecure else []) + command + list(arguments.flower_arguments)
    environment = flower_environment(os.environ)
    # Flower starts flwr-serverapp / flwr-clientapp by name: this environment's bin folder comes first.
    environment["PATH"] = str(Path(sys.executable).parent) + os.pathsep + environment.get("PATH", "")
    _LOG.info("%s %s", program, " ".join(command))
    if mode == "supernode":
        from experiments_manager.federated.keeper import start_keeper
        from experiments_manager.federated.worker_protocol import FOLDER_VARIABLE

        environment[FOLDER_VARIABLE] = str(start_keeper(os.getpid()))
        # Flower's SuperNode, mended (flower_supernode.py); -P: the current folder's modules shadow none of its imports
        executable = sys.executable
        argv = [executable, "-P", "-m", "experiments_manager.federated.flower_supernode", program, *command]
    else:
        executable, argv = flower_program(program), [program, *command]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(executable, argv, environment)


def simulate_command(settings: Union[PathLike, Settings], overrides: Optional[Mapping[str, Any]] = None,
                     num_clients: Optional[int] = None, rounds: Optional[int] = None,
                     round_timeout: Optional[float] = None, mlflow: Optional[str] = None,
                     on_created: Optional[Callable[[Experiment], object]] = None, init_from: Optional[str] = None,
                     skip_mismatch: bool = False, trust_code: bool = False) -> int:
    """`federated simulate` (and `train` of a settings file with `enable_federated_learning = True`, which
    passes the `Settings` it loaded; `on_created`: told the server's folder once made, `--requeue-file`;
    `init_from`: `--init-from`)."""
    from experiments_manager.federated.simulation import simulate

    experiment = simulate(settings, num_clients, rounds, overrides, round_timeout, mlflow=mlflow,
                          on_created=on_created, init_from=init_from, skip_mismatch=skip_mismatch,
                          trust_code=trust_code)
    return report(experiment)


def resume_command(folder: PathLike, rounds: Optional[int] = None, trust_code: bool = False,
                   on_superlink: Optional[tuple[Optional[str], Optional[str], Optional[float]]] = None) -> int:
    """`federated simulate --resume RUN` and `train --resume RUN` of a federation's server folder: it continues
    from its last recorded round (`simulation.resume_simulation`); `federated run --resume RUN` (`on_superlink`:
    its --superlink, --connection and --timeout) continues a deployed one as a new Flower run
    (`deployment.resume_deployment`). Prints where its outputs are, returns the exit code as `report` does."""
    from experiments_manager.run.experiment import Experiment

    experiment = Experiment.open(folder, trust_code=trust_code)  # not a run: said at once, before TensorFlow
    experiment.refuse_foreign_code()
    experiment.refuse_lost_checkpoints()
    from experiments_manager.utils.native_noise import import_tensorflow_quietly

    import_tensorflow_quietly()
    if on_superlink is not None:
        from experiments_manager.federated.deployment import resume_deployment

        superlink, connection, timeout = on_superlink
        return report(resume_deployment(experiment, superlink, connection, rounds, timeout))
    from experiments_manager.federated.simulation import resume_simulation

    return report(resume_simulation(experiment, rounds))


def report(experiment: Experiment) -> int:
    """Prints where the federation's outputs are; returns the exit code (0 finished, 128 + signal interrupted by
    one, 1 failed)."""
    from experiments_manager.run.record import Status
    from experiments_manager.run.version_records import reported_version
    from experiments_manager.tracking.sender import report_lines

    info = experiment.run_info()
    last, _ = reported_version(info, experiment.export_dir)  # the version holding the best round, as `train` says
    status = info.get("status")
    lines = [
        f"status:            {status}" + (f" ({info.get('error') or info.get('reason')})"
                                              if info.get("error") or status == Status.INTERRUPTED else ""),
        f"experiment folder: {experiment.root}",
        f"rounds completed:  {info.get('rounds_completed', 0)} of {info.get('federated', {}).get('rounds')}",
        f"best {info.get('monitored_loss_name')}: {info.get('best_value')} (round {info.get('best_epoch')})",
        f"exported model:    {experiment.export_dir / str(last) if last else 'none yet'}",
        f"clients' folders:  {experiment.root / 'clients'}",
        f"training curves:   {experiment.curves_png}",
        f"TensorBoard:       tensorboard --logdir {experiment.root}",
        f"serve it:          {command_name()} serve --model_dir {experiment.root}",
        *report_lines(info, experiment.root),
    ]
    print("\n".join(lines))
    if status == Status.INTERRUPTED:  # a stop signal: 128 + its number, as `train` exits
        return int(info.get("exit_code") or 1)
    return 0 if status == Status.FINISHED else 1
