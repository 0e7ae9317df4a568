"""`experiments-manager check RUN`: verify a run folder, repair what its records give back."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

NAME = "check"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME, help="verify a run folder and repair what can be derived",
        description="Verify an experiment folder, one line per part: run.json, every checkpoint and every exported "
                    "version against their recorded checksums, history.csv's rows, train.log. history.csv torn by "
                    "a power loss (or cut short) is rebuilt from the newest sound checkpoint's copy, else cut to its "
                    "whole rows, under the run's lease (a run being written is reported, not touched). Damaged "
                    "checkpoints and versions are named: `train --resume` sets them aside. Exit code 0: sound or "
                    "repaired; 1: damage remains; 2: no experiment folder, or an unreadable run.json.",
    )
    parser.add_argument("run", metavar="RUN", help="an experiment folder")
    parser.add_argument("--no-repair", dest="repair", action="store_false",
                        help="only report: write nothing (default: repair history.csv)")
    return parser


def run(arguments: argparse.Namespace, argv: list[str]) -> int:
    """Prints one line per part; returns 0 (sound or repaired) or 1 (damage remains)."""
    from experiments_manager.run.experiment import running_command
    from experiments_manager.runs.check import check_run

    report = check_run(arguments.run, running_command(), repair=arguments.repair)
    print("\n".join(f"{arguments.run}: {line}" for line in report.lines))
    return report.exit_code
