"""`experiments-manager list`: a table (or CSV, JSON) of the experiments (and sweeps) in a folder, filtered and
sorted."""

from __future__ import annotations

import argparse

from experiments_manager.commands.arguments import comma_separated

NAME = "list"
FORMATS = ("table", "csv", "json")
EPILOG = """
keys (for --where and --sort): experiment, status, epoch, best (= best_value), best_epoch, versions, monitor,
started, ended, path; every hparam by its name (learningRate); every metric of the run's last epoch (val_loss,
loss, ...); test_<name> for each metric of the run's newest evaluation. A key that is sorted or filtered by is
shown as a column.

examples:
  experiments-manager list experiments --status finished --sort best_value
  experiments-manager list experiments --where 'learningRate<0.01' --where optimizer=adam --sort=-best_epoch
  experiments-manager list experiments --format csv > runs.csv
""".removeprefix("\n")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME, help="table of experiments",
        description="Print a table of the experiments (and sweeps) in a folder, up to 4 levels below it: status, "
                    "epochs, best value and epoch, exported versions, and the newest evaluation's metrics "
                    "(test_<name>).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("working_folder", nargs="?", default=".", metavar="FOLDER",
                        help="a working folder, or any folder above several (default: the current one)")
    parser.add_argument("--wide", action="store_true", help="also show every run's hparams")
    parser.add_argument("--status", action="append", type=comma_separated, default=[], metavar="STATUS[,...]",
                        help="only runs with this status (running, finished, failed, interrupted; dead: run.json says "
                             "running but its writer is provably gone, as after kill -9; stalled?: its writer on "
                             "another host has not renewed its heartbeat for a third of the lease timeout); repeatable")
    parser.add_argument("--where", action="append", default=[], metavar="KEY<OP>VALUE",
                        help="only runs whose KEY compares so with VALUE (OP: = != < <= > >=; numbers compare as "
                             "numbers, anything else as text; quote it for the shell); repeatable: all must hold; "
                             "a run without a value for KEY is left out")
    parser.add_argument("--sort", action="append", type=comma_separated, default=[], metavar="[-]KEY[,...]",
                        help="order by KEY, lowest first; -KEY highest first (write --sort=-KEY); several keys: "
                             "the first decides first; runs without a value come last (default: oldest first)")
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="table (default); csv: the table's columns, header first; json: a list, one object "
                             "per run with everything shown and its results")
    return parser


def run(arguments: argparse.Namespace, argv: list[str]) -> int:
    """Prints the runs (and, as a table without filters, the sweeps); returns 0."""
    from experiments_manager.runs.listing import SWEEP_COLUMNS, format_rows, format_table, select_runs, sweep_rows

    statuses = [status for group in arguments.status for status in group]
    folder = arguments.working_folder
    rows, columns = select_runs(folder, arguments.where, [key for group in arguments.sort for key in group], statuses,
                                arguments.wide)
    print(format_rows(rows, columns, arguments.format))
    filtered = statuses or arguments.where
    sweeps = [] if arguments.format != "table" or filtered else sweep_rows(folder)
    if sweeps:
        print()
        print(format_table(sweeps, SWEEP_COLUMNS))
    return 0
