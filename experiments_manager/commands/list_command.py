"""`experiments-manager list`: a table of the experiments (and sweeps) in a working folder."""

NAME = "list"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        NAME, help="table of experiments",
        description="Print a table of the experiments (and sweeps) in a folder, up to 4 levels below it.",
    )
    parser.add_argument("working_folder", nargs="?", default=".", metavar="FOLDER",
                        help="a working folder, or any folder above several (default: the current one)")
    parser.add_argument("--wide", action="store_true", help="also show every run's hparams")
    return parser


def run(arguments, argv):
    """Prints the tables; returns 0."""
    from experiments_manager.listing import COLUMNS, SWEEP_COLUMNS, WIDE_COLUMNS, experiment_rows, format_table, sweep_rows

    print(format_table(experiment_rows(arguments.working_folder), WIDE_COLUMNS if arguments.wide else COLUMNS))
    sweeps = sweep_rows(arguments.working_folder)
    if sweeps:
        print()
        print(format_table(sweeps, SWEEP_COLUMNS))
    return 0
