"""`experiments-manager evaluate`: a run's best exported version (or version N) on its test set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments_manager.commands.arguments import (add_registered_run_argument, add_trust_code_argument, positive_int,
                                                     resolve_registered_run)

if TYPE_CHECKING:
    import argparse

NAME = "evaluate"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME, help="evaluate a run's exported version on its test set",
        description="Evaluate a run's best exported version (or --version N) on the settings' test pipeline "
        "(get_input_pipeline(raw_data_dir_test, isTraining=False, ...)) or on --data FOLDER: the compiled loss and "
        "metrics, and for a classifier the confusion matrix and the per-class table, saved under "
        "RUN/evaluations/<stamp>-v<N>/ (list and diff show the newest). A run still training can be evaluated.",
    )
    add_registered_run_argument(parser)
    parser.add_argument("--version", type=positive_int, default=None, metavar="N",
                        help="the exported version (default: the one holding the run's best epoch)")
    parser.add_argument("--data", default=None, metavar="FOLDER",
                        help="the raw_data_files_folder given to get_input_pipeline (isTraining=False) instead of "
                        "the settings' raw_data_dir_test")
    parser.add_argument("--accept-code-change", action="store_true",
                        help="evaluate although a module the run imported (a helper beside its model file) changed "
                        "since it trained (default: refused, naming the file)")
    parser.add_argument("--output", default=None, metavar="DIR",
                        help="save the evaluation in DIR/<stamp>-v<N>/ instead of RUN/evaluations/ (a run on a "
                        "read-only or full disk: its numbers are printed, and said unsaved, without it)")
    add_trust_code_argument(parser)
    return parser


def run(arguments: argparse.Namespace, argv: list[str]) -> int:
    """Evaluates, prints the table; returns 0, or 75 when the disk took no write (the numbers printed all the
    same, then one line saying they are not saved)."""
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.utils.errors import EXIT_TEMPFAIL, print_problems
    from experiments_manager.utils.native_noise import import_tensorflow_quietly

    resolve_registered_run(arguments)
    experiment = Experiment.open(arguments.run, trust_code=arguments.trust_code)  # not a run: said at once,
    experiment.refuse_foreign_code()  # before TensorFlow is imported
    import_tensorflow_quietly()
    from experiments_manager.runs.evaluation import evaluate_run

    evaluation = evaluate_run(experiment, arguments.version, data=arguments.data,
                              accept_code_change=arguments.accept_code_change, output=arguments.output)
    print(evaluation, flush=True)
    if evaluation.unsaved is not None:
        print_problems(evaluation.unsaved)
        return EXIT_TEMPFAIL
    return 0
