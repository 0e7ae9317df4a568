"""`experiments-manager mlflow sync RUN|FOLDER`: send what runs kept for MLflow (compute nodes without a route to
the server) to the tracking server, once."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

NAME = "mlflow"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME, help="send what runs logged with --mlflow kept in their folders to the MLflow server",
        description="A run trained with --mlflow keeps what it has to say to MLflow in its folder "
                    "(mlflow_outbox.jsonl) until the server takes it. `sync` sends what the server does not have "
                    "yet, for one run or every run below a folder: from a login node, for runs of compute nodes "
                    "that cannot reach the server. What a damaged or cut-short outbox lost (named by line) is "
                    "rebuilt from run.json and history.csv first; a run that ended gets its end. Twice sends nothing "
                    "twice; a run still training is skipped (it sends its own). Exit 75 when the server does not "
                    "answer or this machine's disk fails; exit 2 when the server refuses (a 4xx: a URI with a path, "
                    "credentials).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sync = actions.add_parser("sync", help="send the runs' pending records", description=parser.description)
    sync.add_argument("place", metavar="RUN|FOLDER", help="a run folder, or a folder above runs")
    sync.add_argument("--mlflow", metavar="URI", default=None,
                      help="the tracking server (default: the one each run's run.json names)")
    return parser


def run(arguments: argparse.Namespace, argv: list[str]) -> int:
    """Sends each tracked run's pending records; prints a line per run; returns 0."""
    from experiments_manager.run.experiment import running_command
    from experiments_manager.tracking.options import tracking_uri
    from experiments_manager.tracking.sync import sync_runs

    uri = tracking_uri(arguments.mlflow, "--mlflow") if arguments.mlflow is not None else None
    for line in sync_runs(arguments.place, uri, command=running_command()):
        print(line)
    return 0
