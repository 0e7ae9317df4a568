"""`experiments-manager federated simulate|run|superlink|supernode`: the command line of federated training.

Importing this module imports neither TensorFlow nor Flower (`--help` stays fast).
"""

import logging

_LOG = logging.getLogger(__name__)


def add_federated_parser(commands, positive_int):
    """Adds `federated` and its sub-commands to the `experiments-manager` sub-parsers."""
    federated = commands.add_parser(
        "federated",
        help="federated training with Flower (simulated on this machine, or deployed on SuperNodes)",
        description="Federated training with Flower from one settings file: hparams['federated'] names the "
        "strategy (FedAvg default), minCl/minFit/minEval the client counts, each client trains nbEpoch local "
        "epochs per round. The server's experiment folder holds the clients' folders and exports the global "
        "model whenever it improves.",
    )
    modes = federated.add_subparsers(dest="federated_command", metavar="MODE", required=True)

    simulate = modes.add_parser(
        "simulate",
        help="run N clients on this machine (Flower's simulation engine)",
        description="Run a federation of N simulated clients on this machine with Flower's simulation engine "
        "(Ray). Client i loads the settings with hparams['procID'] = i.",
    )
    _add_job_arguments(simulate, positive_int)
    simulate.add_argument("--num-clients", type=positive_int, metavar="N",
                          help="simulated clients (default: hparams['minCl'], else 2)")

    run = modes.add_parser(
        "run",
        help="submit the federation to a running SuperLink (Flower's `flwr run`) and follow it",
        description="Create the server experiment folder, write a Flower app (settings and model files "
        "included) and submit it to a running SuperLink with `flwr run`; wait until Flower reports the run "
        "finished. Start the SuperLink and one SuperNode per data holder first (`federated superlink`, "
        "`federated supernode`).",
    )
    _add_job_arguments(run, positive_int)
    where = run.add_mutually_exclusive_group(required=True)
    where.add_argument("--superlink", metavar="HOST:PORT", help="an insecure SuperLink (plain HTTP, trusted network)")
    where.add_argument("--connection", metavar="NAME",
                       help="a SuperLink connection of your Flower config ($FLWR_HOME/config.toml: TLS, accounts)")
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="stop the run after SECONDS (default: none)")

    superlink = modes.add_parser(
        "superlink",
        help="start a Flower SuperLink (runs ServerApps; one HTTP port for nodes, runs and apps)",
        description="Start `flower-superlink` on HOST:PORT with Flower's telemetry, update check and runtime "
        "dependency installation off. Arguments after `--` go to flower-superlink unchanged.",
    )
    superlink.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1: this machine only)")
    superlink.add_argument("--port", type=int, default=8000, help="port (default 8000, Flower's)")
    superlink.add_argument("--insecure", action="store_true",
                           help="plain HTTP (else give --ssl-certfile/--ssl-keyfile after --)")

    supernode = modes.add_parser(
        "supernode",
        help="start a Flower SuperNode for one data holder (runs the ClientApp on partition I of N)",
        description="Start `flower-supernode` connected to the SuperLink, with node config "
        "'partition-id=I num-partitions=N' (the settings see I as hparams['procID']). Arguments after `--` "
        "go to flower-supernode unchanged.",
    )
    supernode.add_argument("--superlink", required=True, metavar="HOST:PORT", help="the SuperLink's address")
    supernode.add_argument("--partition-id", type=int, required=True, metavar="I", help="this client's id, 0..N-1")
    supernode.add_argument("--num-partitions", type=positive_int, required=True, metavar="N", help="clients in all")
    supernode.add_argument("--host", default="127.0.0.1", help="interface of its ClientApp API (default 127.0.0.1)")
    supernode.add_argument("--port", type=int, default=9094, help="port of its ClientApp API (default 9094)")
    supernode.add_argument("--insecure", action="store_true", help="plain HTTP to the SuperLink")
    for parser in (superlink, supernode):
        parser.add_argument("flower_arguments", nargs="*", metavar="-- FLOWER_ARGS",
                            help="passed to the Flower command unchanged")
    return federated


def _add_job_arguments(parser, positive_int):
    parser.add_argument("-u", "--usersettings", required=True, metavar="SETTINGS", help="the settings module (.py)")
    parser.add_argument("--rounds", type=positive_int, metavar="R",
                        help="federated rounds (default: hparams['rounds'], else 20)")
    parser.add_argument(
        "--hparam", action="append", default=[], metavar="KEY=VALUE",
        help="override hparams[KEY] (value parsed as a Python literal), for the server and every client; repeatable",
    )
    parser.add_argument("--round-timeout", type=float, metavar="SECONDS",
                        help="longest wait for clients to connect or answer in a round "
                        "(default: the settings' federated_round_timeout_secs, 600)")


def federated(arguments):
    """Runs a `federated` sub-command; returns the exit code."""
    from experiments_manager.settings import parse_hparam_overrides

    mode = arguments.federated_command
    if mode in ("superlink", "supernode"):
        return _exec_flower(mode, arguments)
    overrides = parse_hparam_overrides(arguments.hparam)
    if mode == "simulate":
        return simulate_command(arguments.usersettings, overrides, arguments.num_clients, arguments.rounds,
                                arguments.round_timeout)
    from experiments_manager.federated.deployment import deploy

    experiment = deploy(arguments.usersettings, superlink=arguments.superlink, connection=arguments.connection,
                        rounds=arguments.rounds, hparam_overrides=overrides, round_timeout=arguments.round_timeout,
                        timeout=arguments.timeout)
    return report(experiment)


def _exec_flower(mode, arguments):
    """Replaces this process by flower-superlink / flower-supernode (so its PID is Flower's)."""
    import os
    import sys
    from pathlib import Path

    from experiments_manager.federated.deployment import FLOWER_ENVIRONMENT, flower_program

    if mode == "superlink":
        program = "flower-superlink"
        command = ["--host", arguments.host, "--port", str(arguments.port),
                   "--disable-runtime-dependency-installation"]
    else:
        program = "flower-supernode"
        command = ["--superlink", arguments.superlink, "--host", arguments.host, "--port", str(arguments.port),
                   "--node-config", f"partition-id={arguments.partition_id} num-partitions={arguments.num_partitions}"]
    command = (["--insecure"] if arguments.insecure else []) + command + list(arguments.flower_arguments)
    executable = flower_program(program)
    environment = {**os.environ, **FLOWER_ENVIRONMENT}
    # Flower starts flwr-serverapp / flwr-clientapp by name: this environment's bin folder comes first.
    environment["PATH"] = str(Path(sys.executable).parent) + os.pathsep + environment.get("PATH", "")
    _LOG.info("%s %s", program, " ".join(command))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(executable, [program, *command], environment)


def simulate_command(settings, overrides=None, num_clients=None, rounds=None, round_timeout=None):
    """`federated simulate` (and `train` of a settings file with `enable_federated_learning = True`, which
    passes the `Settings` it loaded)."""
    from experiments_manager.federated.simulation import simulate

    experiment = simulate(settings, num_clients, rounds, overrides, round_timeout)
    return report(experiment)


def report(experiment):
    """Prints where the federation's outputs are; returns the exit code (0 finished, 1 failed)."""
    info = experiment.run_info()
    last = info.get("last_exported_version")
    status = info.get("status")
    lines = [
        f"status:            {status}" + (f" ({info['error']})" if info.get("error") else ""),
        f"experiment folder: {experiment.root}",
        f"rounds completed:  {info.get('rounds_completed', 0)} of {info.get('federated', {}).get('rounds')}",
        f"best {info.get('monitored_loss_name')}: {info.get('best_value')} (round {info.get('best_epoch')})",
        f"exported model:    {experiment.export_dir / str(last) if last else 'none yet'}",
        f"clients' folders:  {experiment.root / 'clients'}",
        f"training curves:   {experiment.curves_png}",
        f"TensorBoard:       tensorboard --logdir {experiment.root}",
        f"serve it:          experiments-manager serve --model_dir {experiment.root}",
    ]
    print("\n".join(lines))
    return 0 if status == "finished" else 1
