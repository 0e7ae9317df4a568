"""How much of the package is typed: the share of functions fully annotated, per package and in all.

A function (a `def` or `async def` anywhere: module level, a method, nested) is fully annotated when each of its
parameters has an annotation (a method's `self` / `cls` excepted) and its return has one (an `__init__` with at
least one annotated parameter excepted, as mypy excepts it). The target in docs/development.md is 90 % of all
functions; `--check PERCENT` exits 1 below it.

Example:
    python tools/annotation_coverage.py            # a table per package, then the total
    python tools/annotation_coverage.py --missing experiments_manager/serving   # the functions still to type
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "experiments_manager"

Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Definition:
    """One function: where it is and whether it is fully annotated."""

    path: Path
    line: int
    name: str
    annotated: bool


def _is_method(function: Function, parents: dict[ast.AST, ast.AST]) -> bool:
    return isinstance(parents.get(function), ast.ClassDef)


def _fully_annotated(function: Function, method: bool) -> bool:
    arguments = function.args
    positional = [*arguments.posonlyargs, *arguments.args]
    static = any(isinstance(decorator, ast.Name) and decorator.id == "staticmethod"
                 for decorator in function.decorator_list)
    if method and not static and positional:
        positional = positional[1:]  # self or cls
    parameters = [*positional, *arguments.kwonlyargs,
                  *(argument for argument in (arguments.vararg, arguments.kwarg) if argument is not None)]
    if any(parameter.annotation is None for parameter in parameters):
        return False
    if function.returns is not None:
        return True
    return function.name == "__init__" and bool(parameters)


def definitions(path: Path) -> Iterator[Definition]:
    """Every function defined in the file at `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield Definition(path, node.lineno, node.name, _fully_annotated(node, _is_method(node, parents)))


def _group(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "(top)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--missing", metavar="FOLDER", nargs="?", const=str(PACKAGE),
                        help="list the functions not fully annotated below FOLDER (default: the package)")
    parser.add_argument("--check", metavar="PERCENT", type=float,
                        help="exit 1 when less than PERCENT %% of all functions are fully annotated")
    options = parser.parse_args(argv)
    found = [definition for path in sorted(PACKAGE.rglob("*.py")) for definition in definitions(path)]
    if options.missing:
        folder = Path(options.missing).resolve()
        for definition in found:
            if not definition.annotated and definition.path.is_relative_to(folder):
                print(f"{definition.path.relative_to(ROOT)}:{definition.line}: {definition.name}")
        return 0
    groups: dict[str, list[Definition]] = {}
    for definition in found:
        groups.setdefault(_group(definition.path), []).append(definition)
    print(f"{'package':<14} {'functions':>9} {'annotated':>9} {'share':>7}")
    for group, members in sorted(groups.items()):
        typed = sum(definition.annotated for definition in members)
        print(f"{group:<14} {len(members):>9} {typed:>9} {100 * typed / len(members):>6.1f}%")
    typed = sum(definition.annotated for definition in found)
    share = 100 * typed / len(found)
    print(f"{'all':<14} {len(found):>9} {typed:>9} {share:>6.1f}%")
    if options.check is not None and share < options.check:
        print(f"annotation_coverage: {share:.1f}% of functions fully annotated, below the target {options.check}%",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
