"""The `experiments-manager` command line. TensorFlow is imported only by commands that need it."""

import argparse
import logging
import os
import sys

from experiments_manager.errors import UserInputError

DESCRIPTION = "Train, export and track TensorFlow/Keras experiments from one settings file."
SUBCOMMANDS = ("train", "list")


def build_parser():
    parser = argparse.ArgumentParser(prog="experiments-manager", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a new experiment, or resume one",
        description="Train a model from a settings file into a new experiment folder, or resume one.",
    )
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("-u", "--usersettings", metavar="SETTINGS", help="the settings module (.py)")
    source.add_argument(
        "--resume", "--model_dir", dest="resume", metavar="EXPERIMENT_DIR",
        help="continue this experiment from its last checkpoint",
    )
    train.add_argument(
        "--hparam", action="append", default=[], metavar="KEY=VALUE",
        help="override hparams[KEY] (value parsed as a Python literal); repeatable",
    )

    listing = commands.add_parser(
        "list", help="table of experiments", description="Print a table of the experiments in a working folder."
    )
    listing.add_argument("working_folder", nargs="?", default=".", metavar="WORKING_FOLDER")
    return parser


def _with_default_command(argv):
    """`python -m experiments_manager --usersettings S` trains, as the original framework did."""
    if argv and argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help"):
        return ["train"] + list(argv)
    return list(argv)


def main(argv=None):
    """Runs the command line; returns the exit code."""
    arguments = build_parser().parse_args(_with_default_command(sys.argv[1:] if argv is None else argv))
    _configure_logging()
    try:
        if arguments.command == "train":
            return _train(arguments)
        if arguments.command == "list":
            return _list(arguments)
        build_parser().print_help()
        return 2
    except UserInputError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2


def _configure_logging():
    """Our INFO lines on stderr; TensorFlow's C++ and Python chatter at warnings only."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours = logging.getLogger("experiments_manager")
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False


def _train(arguments):
    from experiments_manager import training
    from experiments_manager.settings import parse_hparam_overrides

    if arguments.resume:
        if arguments.hparam:
            raise UserInputError("--hparam: not accepted with --resume (the run keeps its own hparams)")
        outcome = training.resume(arguments.resume)
    else:
        outcome = training.train(arguments.usersettings, parse_hparam_overrides(arguments.hparam))
    _report(outcome)
    return outcome.exit_code


def _report(outcome):
    experiment = outcome.experiment
    info = experiment.run_info()
    last = info.get("last_exported_version")
    lines = [
        f"status:            {outcome.status}" + (f" ({outcome.reason})" if outcome.reason else ""),
        f"experiment folder: {experiment.root}",
        f"best {info.get('monitored_loss_name')}: {info.get('best_value')} (epoch {info.get('best_epoch')})",
        f"exported model:    {experiment.export_dir / str(last) if last else 'none yet'}",
        f"TF Serving config: {experiment.models_config}",
        f"training curves:   {experiment.curves_png}",
        f"TensorBoard:       tensorboard --logdir {experiment.root.parent}",
    ]
    if outcome.status == "interrupted":
        lines.append(f"resume with:       experiments-manager train --resume {experiment.root}")
    print("\n".join(lines))


def _list(arguments):
    from experiments_manager.listing import experiment_rows, format_table

    print(format_table(experiment_rows(arguments.working_folder)))
    return 0
