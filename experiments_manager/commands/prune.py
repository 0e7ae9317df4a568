"""`experiments-manager prune`: delete failed and interrupted runs, all but the best trials of a sweep, or the
checkpoints of finished runs; a dry run unless --yes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments_manager.commands.arguments import positive_int

if TYPE_CHECKING:
    import argparse

NAME = "prune"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME, help="delete failed runs, a sweep's worst trials, finished runs' checkpoints (dry run by default)",
        description="Say what would be deleted below FOLDER (runs up to 4 levels below it, as `list` finds them), "
                    "each path with its size and the total; delete it only with --yes. Without --keep-best or "
                    "--checkpoints, the failed and interrupted runs go (--failed). A run being written (its lease "
                    "held by a live process) is skipped and said so, as is a sweep's trial that resuming the sweep "
                    "continues. What goes is first renamed to a hidden .deleting-<name>-<pid> in the same folder, "
                    "then removed; the next prune removes what a crash left of that.",
    )
    parser.add_argument("folder", nargs="?", default=".", metavar="FOLDER",
                        help="a working folder, a sweep folder, or any folder above (default: the current one)")
    parser.add_argument("--failed", action="store_true",
                        help="failed and interrupted runs, and those recorded running whose writer is gone "
                             "(the default when neither --keep-best nor --checkpoints is given)")
    parser.add_argument("--keep-best", type=positive_int, metavar="N",
                        help="in each sweep folder (FOLDER or below it), every trial but the N best by their best "
                             "monitored value")
    parser.add_argument("--checkpoints", action="store_true",
                        help="the checkpoints/ folder of each finished run (its exported versions stay; it can no "
                             "longer be resumed or extended)")
    parser.add_argument("--yes", "--delete", dest="yes", action="store_true",
                        help="delete (default: a dry run that deletes nothing)")
    return parser


def run(arguments: argparse.Namespace, argv: list[str]) -> int:
    """Prints what goes (and goes with --yes); returns 0."""
    from experiments_manager.run.experiment import running_command
    from experiments_manager.runs.pruning import carry_out, human_size, plan_prune

    failed = arguments.failed or (arguments.keep_best is None and not arguments.checkpoints)
    plan = plan_prune(arguments.folder, failed=failed, keep_best=arguments.keep_best,
                      checkpoints=arguments.checkpoints)
    width = max([len(human_size(item.size)) for item in plan.doomed] + [9])
    for skipped in plan.skipped:  # its own name: `item` is a Doomed below
        print(f"{'skipped':<12}  {'':>{width}}  {skipped.path}  ({skipped.why})")
    if not plan.doomed:
        print(f"nothing to prune in {arguments.folder}")
        return 0
    if not arguments.yes:
        for item in plan.doomed:
            print(f"{'would delete':<12}  {human_size(item.size):>{width}}  {item.path}  ({item.why})")
        print(f"{'total':<12}  {human_size(plan.total):>{width}}  in {_paths(len(plan.doomed))}: a dry run, nothing "
              "deleted (--yes deletes)")
        return 0
    freed, count = 0, 0
    for item, left_alone in carry_out(plan, running_command()):
        if left_alone:
            print(f"{'skipped':<12}  {'':>{width}}  {item.path}  ({left_alone})")
            continue
        print(f"{'deleted':<12}  {human_size(item.size):>{width}}  {item.path}  ({item.why})")
        freed, count = freed + item.size, count + 1
    print(f"{'total freed':<12}  {human_size(freed):>{width}}  in {_paths(count)}")
    return 0


def _paths(count: int) -> str:
    return f"{count} path" + ("" if count == 1 else "s")
