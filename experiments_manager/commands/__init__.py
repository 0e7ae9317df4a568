"""The `experiments-manager` sub-commands, one module each, registered here.

A command module defines
- `NAME`: the sub-command, as typed;
- `add_parser(subparsers)`: adds (and returns) its argparse sub-parser;
- `run(arguments, argv)`: runs it with the parsed arguments (argv: the command line, for a command that starts
  copies of itself); returns the exit code, or raises `errors.UserInputError`.

`cli.build_parser` adds the sub-parsers in `COMMANDS`' order (the order of `--help`); `cli.main` runs the
command named on the command line. Command modules import only argparse pieces and light library modules at
the top, so `--help` imports no TensorFlow; what a command needs to run is imported in its `run`.
Library modules never import this package (nor `cli`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from experiments_manager.commands import (check, diff, evaluate, export, federated, kafka_produce, list_command,
                                          mlflow_command, predict, prune, serve, sweep, train)

if TYPE_CHECKING:
    import argparse


class CommandModule(Protocol):
    """What a command module defines (see above)."""

    NAME: str

    def add_parser(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        ...

    def run(self, arguments: argparse.Namespace, argv: list[str]) -> int:
        ...


COMMANDS: tuple[CommandModule, ...] = (train, serve, predict, kafka_produce, sweep, federated, list_command,
                                       evaluate, export, diff, prune, check, mlflow_command)
NAMES = tuple(command.NAME for command in COMMANDS)


def command_named(name: str) -> CommandModule:
    """The command module whose NAME is `name`."""
    return COMMANDS[NAMES.index(name)]
