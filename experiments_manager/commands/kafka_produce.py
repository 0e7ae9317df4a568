"""`experiments-manager kafka-produce`: publish the settings' input pipelines to Kafka topics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments_manager.commands.arguments import add_bootstrap_servers_argument, add_hparam_argument, positive_int

if TYPE_CHECKING:
    import argparse

NAME = "kafka-produce"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="publish the settings' input pipelines to Kafka topics",
        description="Run the settings' get_input_pipeline for training and validation and publish one "
        "self-describing record per sample to <session_name>_train and <session_name>_val.",
    )
    parser.add_argument("-u", "--usersettings", required=True, metavar="SETTINGS", help="the settings module (.py)")
    add_hparam_argument(parser)
    add_bootstrap_servers_argument(parser)
    parser.add_argument(
        "--epochs", type=positive_int, metavar="N",
        help="passes over the training pipeline (default: the settings' nbEpoch, what one training run reads; "
        "validation is published once)",
    )
    parser.add_argument(
        "--partitions", type=positive_int, default=1, metavar="N",
        help="partitions of topics that do not exist yet (default 1)",
    )
    parser.add_argument("--only", choices=("train", "val"), help="publish only this split")
    return parser


def run(arguments: argparse.Namespace, argv: list[str]) -> int:
    """Publishes the pipelines; returns the exit code."""
    from experiments_manager.kafka.entry_points import kafka_produce

    return kafka_produce(arguments)
