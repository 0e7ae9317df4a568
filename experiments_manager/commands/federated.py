"""`experiments-manager federated simulate|run|superlink|supernode`: federated training with Flower."""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments_manager.commands.arguments import add_hparam_argument, add_trust_code_argument, positive_int

if TYPE_CHECKING:
    import argparse

NAME = "federated"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="federated training with Flower (simulated on this machine, or deployed on SuperNodes)",
        description="Federated training with Flower from one settings file: hparams['federated'] names the "
        "strategy (FedAvg default), minCl/minFit/minEval the client counts, each client trains nbEpoch local "
        "epochs per round. The server's experiment folder holds the clients' folders and exports the global "
        "model whenever it improves.",
    )
    modes = parser.add_subparsers(dest="federated_command", metavar="MODE", required=True)

    simulate = modes.add_parser(
        "simulate",
        help="run N clients on this machine (Flower's simulation engine)",
        description="Run a federation of N simulated clients on this machine with Flower's simulation engine "
        "(Ray). Client i loads the settings with hparams['procID'] = i. --resume RUN continues a federation that was "
        "stopped or killed from its last recorded round (or, with --rounds R, extends a finished one), in its folder.",
    )
    _add_job_arguments(simulate, resumable=True)
    simulate.add_argument("--num-clients", type=positive_int, metavar="N",
                          help="simulated clients (default: hparams['minCl'], else 2)")
    simulate.add_argument("--init-from", metavar="RUN[:VERSION]",
                          help="start the global model from a run's best version (or VERSION), centralised or "
                          "federated, matched and reported as `train --init-from` (recorded as fine_tuned_from)")
    simulate.add_argument("--skip-mismatch", action="store_true",
                          help="with --init-from: leave the weights whose shape does not fit as the model made them")

    run_mode = modes.add_parser(
        "run",
        help="submit the federation to a running SuperLink (Flower's `flwr run`) and follow it",
        description="Create the server experiment folder, write a Flower app (settings and model files "
        "included) and submit it to a running SuperLink with `flwr run`; wait until Flower reports the run "
        "finished. Start the SuperLink and one SuperNode per data holder first (`federated superlink`, "
        "`federated supernode`). --resume RUN continues a deployed federation that was stopped, killed or "
        "preempted from its last recorded round (or, with --rounds R, extends a finished one), as a new Flower run.",
    )
    _add_job_arguments(run_mode, resumable=True)
    where = run_mode.add_mutually_exclusive_group(required=True)
    where.add_argument("--superlink", metavar="HOST:PORT", help="an insecure SuperLink (plain HTTP, trusted network)")
    where.add_argument("--connection", metavar="NAME",
                       help="a SuperLink connection of your Flower config ($FLWR_HOME/config.toml: TLS, accounts)")
    run_mode.add_argument("--timeout", type=float, metavar="SECONDS", help="stop the run after SECONDS (default: none)")

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
        "'partition-id=I num-partitions=N' (the settings see I as hparams['procID']), and the SuperNode's "
        "persistent worker: TensorFlow is imported once, the client's model is built at a run's first round and "
        "kept for the next ones; a worker that dies is started again, and it stops with the SuperNode. "
        "Arguments after `--` go to flower-supernode unchanged.",
    )
    supernode.add_argument("--superlink", required=True, metavar="HOST:PORT", help="the SuperLink's address")
    supernode.add_argument("--partition-id", type=int, required=True, metavar="I", help="this client's id, 0..N-1")
    supernode.add_argument("--num-partitions", type=positive_int, required=True, metavar="N", help="clients in all")
    supernode.add_argument("--host", default="127.0.0.1", help="interface of its ClientApp API (default 127.0.0.1)")
    supernode.add_argument("--port", type=int, default=9094, help="port of its ClientApp API (default 9094)")
    supernode.add_argument("--insecure", action="store_true", help="plain HTTP to the SuperLink")
    for flower_parser in (superlink, supernode):
        flower_parser.add_argument("flower_arguments", nargs="*", metavar="-- FLOWER_ARGS",
                                   help="passed to the Flower command unchanged")
    return parser


def _add_job_arguments(parser: argparse.ArgumentParser, resumable: bool = False) -> None:
    if resumable:
        start = parser.add_mutually_exclusive_group(required=True)
        start.add_argument("-u", "--usersettings", metavar="SETTINGS", help="the settings module (.py)")
        start.add_argument("--resume", metavar="RUN",
                           help="continue the federation whose server folder is RUN from its last recorded round, to "
                           "its planned rounds (or to --rounds R)")
        add_trust_code_argument(parser, "the federation's (--resume)")
    else:
        parser.add_argument("-u", "--usersettings", required=True, metavar="SETTINGS",
                            help="the settings module (.py)")
    parser.add_argument("--rounds", type=positive_int, metavar="R",
                        help="federated rounds (default: hparams['rounds'], else 20; with --resume: the rounds in all, "
                        "more than it planned extends it)")
    add_hparam_argument(
        parser,
        help="override hparams[KEY] (value parsed as a Python literal), for the server and every client; repeatable",
    )
    parser.add_argument("--round-timeout", type=float, metavar="SECONDS",
                        help="longest wait for clients to connect or answer in a round "
                        "(default: the settings' federated_round_timeout_secs, 600)")
    parser.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                        help="log the federation's server run to this MLflow tracking server (without URI: "
                        "MLFLOW_TRACKING_URI): each round a step, each exported version a logged model")


def run(arguments: argparse.Namespace, argv: list[str]) -> int:
    """Runs the federated mode; returns the exit code."""
    from experiments_manager.federated.entry_points import federated

    return federated(arguments)
