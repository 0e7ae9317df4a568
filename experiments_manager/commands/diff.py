"""`experiments-manager diff RUN_A RUN_B`: what differs between two runs, as unified diffs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

NAME = "diff"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME, help="what differs between two runs",
        description="Show what differs between two experiment folders, as unified diffs (a/ is RUN_A, b/ RUN_B): "
                    "hparams (those set with --hparam marked), the copies of the settings file and of the model "
                    "file, the stack (python, tensorflow, keras, ... versions as run.json recorded them, git "
                    "commit, host, devices), the seed, the outcome (status, epochs, best value and epoch, exported "
                    "versions) and the newest evaluation. A section without a difference is one line: "
                    "'<section>: same'. Exit code 0 (with --exit-code: 1 when they differ, like git diff), 2 when "
                    "a path is no experiment folder.",
    )
    parser.add_argument("run_a", metavar="RUN_A", help="an experiment folder")
    parser.add_argument("run_b", metavar="RUN_B", help="another experiment folder")
    parser.add_argument("--color", "--colour", dest="color", choices=("auto", "always", "never"), default="auto",
                        help="colour the diff: auto (default: on a terminal, unless NO_COLOR is set), always, never")
    parser.add_argument("--exit-code", action="store_true", help="exit with 1 when the runs differ, 0 when not")
    return parser


def run(arguments: argparse.Namespace, argv: list[str]) -> int:
    """Prints the sections; returns 0 (or 1 with --exit-code when the runs differ)."""
    import os
    import sys

    from experiments_manager.runs.diff import diff_runs

    difference = diff_runs(arguments.run_a, arguments.run_b)
    colour = arguments.color == "always" or (arguments.color == "auto" and sys.stdout.isatty()
                                             and not os.environ.get("NO_COLOR"))
    print(difference.render(colour=colour))
    return 1 if arguments.exit_code and difference.differ else 0
