"""`experiments-manager list`: a table of the experiments (and sweeps) in a working folder."""

NAME = "list"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        NAME, help="table of experiments", description="Print a table of the experiments in a working folder."
    )
    parser.add_argument("working_folder", nargs="?", default=".", metavar="WORKING_FOLDER")
    return parser


def run(arguments, argv):
    """Prints the tables; returns 0."""
    from experiments_manager.listing import SWEEP_COLUMNS, experiment_rows, format_table, sweep_rows

    print(format_table(experiment_rows(arguments.working_folder)))
    sweeps = sweep_rows(arguments.working_folder)
    if sweeps:
        print()
        print(format_table(sweeps, SWEEP_COLUMNS))
    return 0
