"""What each test costs the machine, and where the suite's time goes: a pytest plugin that writes one row per test,
and the summary `.ci/run` prints after the suite.

With `EM_TEST_CPU_REPORT=FILE`, every test appends a row to FILE (tab-separated, one line per test, `TestCost`):
its CPU seconds (as root where cgroup v1's cpuacct is mounted, as in CI: everything its pytest process and what it
started used meanwhile, detached daemons and Slurm jobs included, in a cgroup of the process's own; elsewhere its
process's rusage and its waited-for children's; `_CpuMeter`), its wall seconds (setup, call and teardown), when it
started (seconds since the epoch), the xdist worker that ran it, whether it is marked `slow` (1 or 0), and its node
id (with xdist's `@group` suffix where it ran in a group). Rows of an earlier format (`cpu_seconds<TAB>nodeid`,
before issue 56) are read too, with no wall, start, worker or mark. One run per file: `.ci/run` starts it afresh.

`python tests/cost_report.py FILE [--top N]` prints the summary: the suite's totals, the N test files and the N
tests that cost the most CPU, the xdist groups (each runs on one worker: the longest is the suite's floor), each
worker's busy time, and the tests that took more than SLOW_SECONDS without the `slow` mark (they slow down
`make test-fast`). It is a report, not a guard: the figures are noisy on a shared VM.

Example:
    EM_TEST_CPU_REPORT=/tmp/costs.tsv make test
    .venv/bin/python tests/cost_report.py /tmp/costs.tsv --top 10
"""

from __future__ import annotations

import argparse
import atexit
import collections
import dataclasses
import os
import resource
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

REPORT_VARIABLE = "EM_TEST_CPU_REPORT"
SLOW_SECONDS = 5.0  # a test's wall here under the whole suite's load above which it belongs in the `slow` tier
SLOW_MARK = "slow"  # the mark of that tier (tests/conftest.py adds it to the tests of real daemons)


@dataclasses.dataclass(frozen=True)
class TestCost:
    """One test's row of the report.

    Args:
        cpu_seconds: user + system CPU of what the test ran (`_CpuMeter`: with cgroups, its daemons too).
        wall_seconds: its setup, call and teardown, end to end (None in an earlier format's row).
        started_at: when it started, seconds since the epoch (None in an earlier format's row).
        worker: the xdist worker (`gw0`, ...), or `main` without xdist ('' in an earlier format's row).
        marked_slow: it carries the `slow` mark (None in an earlier format's row).
        nodeid: pytest's id of the test, with xdist's `@group` suffix where it ran in a group.
    """

    __test__ = False  # not a test class, whatever pytest's name rule says

    cpu_seconds: float
    wall_seconds: float | None
    started_at: float | None
    worker: str
    marked_slow: bool | None
    nodeid: str

    @property
    def file(self) -> str:
        """The test's file, as pytest names it (`tests/e2e/test_x.py`)."""
        return self.nodeid.split("::", 1)[0]

    @property
    def group(self) -> str:
        """The xdist group it ran in, or ''."""
        return self.nodeid.rpartition("@")[2] if "@" in self.nodeid.rpartition("::")[2] else ""

    def line(self) -> str:
        """The row as the report file holds it (`parse` reads it back)."""
        return (f"{self.cpu_seconds:.2f}\t{self.wall_seconds:.2f}\t{self.started_at:.2f}\t{self.worker}\t"
                f"{int(bool(self.marked_slow))}\t{self.nodeid}\n")

    @classmethod
    def parse(cls, line: str) -> TestCost:
        """A row of this format, or of the earlier two-column one (`cpu_seconds<TAB>nodeid`)."""
        fields = line.rstrip("\n").split("\t")
        if len(fields) == 2:  # before issue 56
            return cls(float(fields[0]), None, None, "", None, fields[1])
        if len(fields) != 6:
            raise ValueError(f"expected 6 tab-separated fields (or 2, the earlier format), got {len(fields)}: {line!r}")
        cpu, wall, started, worker, slow, nodeid = fields
        return cls(float(cpu), float(wall), float(started), worker, slow == "1", nodeid)


def read_costs(path: Path) -> list[TestCost]:
    """Every row of a report file; ValueError names a row of neither format."""
    return [TestCost.parse(line) for line in path.read_text().splitlines() if line.strip()]


CPUACCT = Path("/sys/fs/cgroup/cpuacct")  # cgroup v1's CPU accounting (no limit), where the machine has it
CGROUP_PREFIX = "em-tests-"  # em-tests-<pid>-<start ns>: a pytest process's cgroup


def _own_cpuacct_cgroup() -> Path | None:
    """The cpuacct cgroup this process is in (its line of /proc/self/cgroup), or None without cgroup v1's cpuacct."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            return CPUACCT / path.lstrip("/")
    return None


class _CpuMeter:
    """The CPU this pytest process and everything it started have used, in seconds.

    As root where cgroup v1's cpuacct is mounted (CI, this VM), the process moves itself into a cgroup of its own,
    made under the one it is in, the first time, so that the count holds every descendant, also the daemons that
    detach from it (Ray's, Slurm's jobs) and those still running: a test's figure includes what the worker's shared
    daemons (a Slurm cluster, a Kafka broker) used meanwhile. Elsewhere, the process's rusage and its waited-for
    children's (RUSAGE_CHILDREN), which miss those. The cgroups of pytest processes that have ended are removed once
    empty; this one is left at exit (moved out of, removed if nothing it started still runs).
    """

    def __init__(self) -> None:
        from experiments_manager.utils.signals import process_alive

        self.usage_file: Path | None = None  # the cgroup's counter, or None: rusage
        parent = _own_cpuacct_cgroup()
        if parent is None or not parent.is_dir():
            return
        for earlier in parent.glob(f"{CGROUP_PREFIX}*"):
            pid = earlier.name[len(CGROUP_PREFIX):].partition("-")[0]
            if pid.isdigit() and not process_alive(int(pid)):
                try:
                    earlier.rmdir()  # empty: removed; a daemon of that run still in it: kept
                except OSError:
                    pass
        folder = parent / f"{CGROUP_PREFIX}{os.getpid()}-{time.time_ns()}"
        try:
            folder.mkdir()
        except OSError:
            return
        try:
            (folder / "cgroup.procs").write_text(f"{os.getpid()}\n")
        except OSError:
            folder.rmdir()
            return
        self.usage_file = folder / "cpuacct.usage"
        atexit.register(self._leave, parent, folder)

    @staticmethod
    def _leave(parent: Path, folder: Path) -> None:
        try:
            (parent / "cgroup.procs").write_text(f"{os.getpid()}\n")
            folder.rmdir()
        except OSError:
            pass

    def seconds(self) -> float:
        if self.usage_file is not None:
            return int(self.usage_file.read_text()) / 1e9
        return sum(usage.ru_utime + usage.ru_stime for usage in (resource.getrusage(resource.RUSAGE_SELF),
                                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


_meter: list[_CpuMeter] = []  # this process's, made by its first test (a list: no `global` statement)


def _cpu_seconds() -> float:
    if not _meter:
        _meter.append(_CpuMeter())
    return _meter[0].seconds()


def _hook_wrapper(function):
    """pytest.hookimpl(hookwrapper=True), where pytest is installed (the summary runs without it)."""
    try:
        import pytest
    except ImportError:
        return function
    return pytest.hookimpl(hookwrapper=True)(function)


@_hook_wrapper
def pytest_runtest_protocol(item, nextitem):  # pytest's hook
    """Appends the test's row to the report file when EM_TEST_CPU_REPORT names one."""
    report = os.environ.get(REPORT_VARIABLE)
    if not report:
        yield
        return
    cpu, wall, started = _cpu_seconds(), time.monotonic(), time.time()
    yield
    cost = TestCost(_cpu_seconds() - cpu, time.monotonic() - wall, started,
                    os.environ.get("PYTEST_XDIST_WORKER", "main"), item.get_closest_marker(SLOW_MARK) is not None,
                    item.nodeid)
    with open(report, "a") as out:  # one short append per test: the workers' lines do not interleave
        out.write(cost.line())


def _table(title: str, rows: Iterable[tuple[str, list[TestCost]]], top: int) -> Iterator[str]:
    ranked = sorted(rows, key=lambda row: -sum(cost.cpu_seconds for cost in row[1]))[:top]
    yield f"{title}:"
    yield f"  {'CPU s':>8} {'wall s':>8} {'tests':>5}  name"
    for name, costs in ranked:
        walls = [cost.wall_seconds for cost in costs if cost.wall_seconds is not None]
        wall = f"{sum(walls):8.1f}" if walls else f"{'-':>8}"
        yield f"  {sum(cost.cpu_seconds for cost in costs):8.1f} {wall} {len(costs):5d}  {name}"


def summary(costs: list[TestCost], top: int = 10) -> str:
    """The report's text: totals, the `top` files and tests by CPU, the groups, the workers, the unmarked slow tests.

    Args:
        costs: the rows (`read_costs`), of one run.
        top: how many files and tests to list (default 10).

    Example:

    ```python
    print(summary(read_costs(Path("build/test-costs.tsv")), top=10))
    ```
    """
    lines = [f"{len(costs)} tests: {sum(cost.cpu_seconds for cost in costs):.0f} CPU-s in their processes and "
             f"what they started"]
    spans = {id(cost): (cost.started_at, cost.started_at + cost.wall_seconds) for cost in costs
             if cost.wall_seconds is not None and cost.started_at is not None}  # an earlier format's rows: none
    first = min((start for start, _ in spans.values()), default=0.0)
    if spans:
        last = max(end for _, end in spans.values())
        lines.append(f"tests' walls add up to {sum(end - start for start, end in spans.values()):.0f} s "
                     f"in a {last - first:.0f}-s suite")
    by_file: dict[str, list[TestCost]] = collections.defaultdict(list)
    by_group: dict[str, list[TestCost]] = collections.defaultdict(list)
    by_worker: dict[str, list[TestCost]] = collections.defaultdict(list)
    for cost in costs:
        by_file[cost.file].append(cost)
        if cost.group:
            by_group[cost.group].append(cost)
        by_worker[cost.worker].append(cost)
    lines += _table(f"the {top} test files that cost the most CPU", by_file.items(), top)
    lines += _table(f"the {top} tests that cost the most CPU", ((cost.nodeid, [cost]) for cost in costs), top)
    lines += _table("xdist groups (each runs on one worker)", by_group.items(), len(by_group))
    if spans:
        lines.append("workers (busy: the sum of their tests' walls; ended: after the suite's first test):")
        for worker, worker_costs in sorted(by_worker.items()):
            own = [spans[id(cost)] for cost in worker_costs if id(cost) in spans]
            if not own:  # rows of the earlier format: no worker, wall or start
                lines.append(f"  (no worker recorded): {len(worker_costs)} tests")
                continue
            busy = sum(end - start for start, end in own)
            ended = max(end for _, end in own) - first
            lines.append(f"  {worker}: {len(worker_costs)} tests, busy {busy:.0f} s, ended at {ended:.0f} s")
    unmarked = sorted((cost for cost in costs if cost.marked_slow is False and (cost.wall_seconds or 0) > SLOW_SECONDS),
                      key=lambda cost: -(cost.wall_seconds or 0))
    if unmarked:
        lines.append(f"over {SLOW_SECONDS:.0f} s without the `slow` mark (make test-fast runs them): "
                     + ", ".join(f"{cost.nodeid} {cost.wall_seconds:.1f} s" for cost in unmarked))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python tests/cost_report.py FILE [--top N]`: prints the summary; exit 2 with one line for a missing or
    damaged file."""
    parser = argparse.ArgumentParser(description="Summarises a test cost report (EM_TEST_CPU_REPORT=FILE).")
    parser.add_argument("report", type=Path, help="the file the tests wrote")
    parser.add_argument("--top", type=int, default=10, help="how many files and tests to list (default 10)")
    arguments = parser.parse_args(argv)
    if not arguments.report.is_file():
        print(f"error: {arguments.report}: no such report (EM_TEST_CPU_REPORT=FILE make test writes it)",
              file=sys.stderr)
        return 2
    try:
        costs = read_costs(arguments.report)
    except ValueError as error:
        print(f"error: {arguments.report}: {error}", file=sys.stderr)
        return 2
    print(summary(costs, arguments.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
