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

    overrides = parse_hparam_overrides(arguments.hparam)
    if arguments.federated_command == "simulate":
        return simulate_command(arguments.usersettings, overrides, arguments.num_clients, arguments.rounds,
                                arguments.round_timeout)
    raise AssertionError(arguments.federated_command)


def simulate_command(settings_path, overrides, num_clients=None, rounds=None, round_timeout=None):
    """`federated simulate` (and `train` of a settings file with `enable_federated_learning = True`)."""
    from experiments_manager.federated.simulation import simulate

    experiment = simulate(settings_path, num_clients, rounds, overrides, round_timeout)
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
