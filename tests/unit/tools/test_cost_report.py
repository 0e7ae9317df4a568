"""tests/cost_report.py: the row each test writes with EM_TEST_CPU_REPORT, read back (the earlier two-column rows
too), and the summary `.ci/run` prints after the suite."""

import subprocess
import sys

import pytest

from conftest import REPO
from cost_report import TestCost, read_costs, summary

ROWS = [
    TestCost(12.5, 20.0, 1000.0, "gw0", True, "tests/e2e/test_a.py::test_one@kafka"),
    TestCost(3.0, 9.0, 1020.0, "gw0", False, "tests/e2e/test_a.py::test_two[x]"),
    TestCost(0.5, 0.5, 1001.0, "gw1", False, "tests/unit/test_b.py::TestThing::test_three"),
]


def test_rows_are_read_back_as_written_and_earlier_rows_without_wall_worker_or_mark(tmp_path):
    report = tmp_path / "costs.tsv"
    report.write_text("".join(row.line() for row in ROWS) + "7.5\ttests/e2e/test_old.py::test_before\n")
    costs = read_costs(report)
    assert costs[:3] == ROWS
    assert costs[3] == TestCost(7.5, None, None, "", None, "tests/e2e/test_old.py::test_before")
    assert [cost.file for cost in costs[:2]] == ["tests/e2e/test_a.py"] * 2
    assert [cost.group for cost in costs[:3]] == ["kafka", "", ""]


def test_the_summary_ranks_files_by_cpu_names_groups_and_workers_and_unmarked_slow_tests():
    text = summary(ROWS, top=1)
    assert text.splitlines()[0] == "3 tests: 16 CPU-s in their processes and what they started"
    assert "tests' walls add up to 30 s in a 29-s suite" in text
    files = text.split("the 1 test files that cost the most CPU:\n")[1].splitlines()
    assert files[1].split() == ["15.5", "29.0", "2", "tests/e2e/test_a.py"]  # the heavier file only (top=1)
    assert "kafka" in text.split("xdist groups")[1]
    assert "gw0: 2 tests, busy 29 s, ended at 29 s" in text and "gw1: 1 tests, busy 0 s, ended at 2 s" in text
    assert text.splitlines()[-1] == ("over 5 s without the `slow` mark (make test-fast runs them): "
                                     "tests/e2e/test_a.py::test_two[x] 9.0 s")


@pytest.mark.parametrize("content, message", [
    (None, "no such report"),
    ("1.0\t2.0\tgw0\ttests/x.py::test_y\n", "expected 6 tab-separated fields (or 2, the earlier format), got 4"),
])
def test_a_missing_or_damaged_report_is_one_line_and_exit_2(tmp_path, content, message):
    report = tmp_path / "costs.tsv"
    if content is not None:
        report.write_text(content)
    result = subprocess.run([sys.executable, str(REPO / "tests/cost_report.py"), str(report)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == "", result
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr and str(report) in result.stderr


def test_a_file_mixing_earlier_rows_with_new_ones_is_summarised():
    text = summary([*ROWS, TestCost(7.5, None, None, "", None, "tests/e2e/test_old.py::test_before")], top=2)
    assert text.splitlines()[0] == "4 tests: 24 CPU-s in their processes and what they started"
    assert "  (no worker recorded): 1 tests" in text and "gw0: 2 tests, busy 29 s" in text
