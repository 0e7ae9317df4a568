"""tests/README.md, the map of what the tests prove, is generated (tools/claims_map.py) from tests/claims.md and the
`@pytest.mark.claim` markers: it must be up to date, every documented claim proved by a marked test or marked
"none yet" / "n/a", and every marker must name a documented claim."""

import re
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import claims_map  # noqa: E402  (tools/ is not a package)


@pytest.mark.claim("tests/README.md is generated from tests/claims.md and the tests' `claim` markers, and checked")
def test_the_map_is_up_to_date_and_every_claim_and_marker_agree(capsys):
    assert claims_map.main(["--check"]) == 0, capsys.readouterr().err


def test_problems_name_unknown_markers_unproved_claims_and_stale_statuses():
    claims = [claims_map.Claim("A", "proved"), claims_map.Claim("A", "unproved"),
              claims_map.Claim("B", "waiting", "none yet (no test)"), claims_map.Claim("B", "proved")]
    markers = [claims_map.Marker("proved", "tests/test_x.py::test_a", line=3),
               claims_map.Marker("waiting", "tests/test_x.py::test_b", line=9),
               claims_map.Marker("typo", "tests/test_y.py::test_c", line=12)]
    found = claims_map.problems(claims, markers)
    assert found == [
        "tests/claims.md: 'proved' is listed twice",
        "tests/test_y.py:12: @pytest.mark.claim('typo'): not a claim of tests/claims.md (add it there, or fix the "
        "text)",
        "tests/claims.md: 'unproved': no test is marked with it (mark one, or add '→ none yet (why)')",
        "tests/claims.md: 'waiting' says 'none' but a test is marked with it: drop the status",
    ]


def test_markers_are_read_from_test_functions_and_methods_only(tmp_path):
    (tmp_path / "test_a.py").write_text(
        "import pytest\n\n@pytest.mark.claim('one', note='(weak: x)')\ndef test_one():\n    pass\n\n"
        "class TestGroup:\n    @pytest.mark.claim('two')\n    def test_two(self):\n        pass\n")
    assert claims_map.read_markers(tmp_path) == [
        claims_map.Marker("one", f"{tmp_path.name}/test_a.py::test_one", "(weak: x)", 3),
        claims_map.Marker("two", f"{tmp_path.name}/test_a.py::TestGroup::test_two", "", 8)]


NOT_ON_A_COLLECTED_TEST = "a claim marker that is not a decorator of a test function pytest collects"


@pytest.mark.parametrize("file, source, message", [
    ("test_b.py", "@pytest.mark.claim('three')\ndef helper():\n    pass\n", f"test_b.py:3: {NOT_ON_A_COLLECTED_TEST}"),
    ("test_b.py", "@pytest.mark.claim('three')\nclass TestGroup:\n    def test_x(self):\n        pass\n",
     f"test_b.py:3: {NOT_ON_A_COLLECTED_TEST}"),
    ("test_b.py", "class Group:\n    @pytest.mark.claim('three')\n    def test_x(self):\n        pass\n",
     f"test_b.py:4: {NOT_ON_A_COLLECTED_TEST}"),
    ("test_b.py", "class TestGroup:\n    def __init__(self):\n        pass\n\n    @pytest.mark.claim('three')\n"
     "    def test_x(self):\n        pass\n", f"test_b.py:7: {NOT_ON_A_COLLECTED_TEST}"),
    ("test_b.py", "pytestmark = pytest.mark.claim('three')\n", f"test_b.py:3: {NOT_ON_A_COLLECTED_TEST}"),
    ("test_b.py", "def test_x():\n    @pytest.mark.claim('three')\n    def test_y():\n        pass\n",
     f"test_b.py:4: {NOT_ON_A_COLLECTED_TEST}"),
    ("helpers.py", "@pytest.mark.claim('three')\ndef test_x():\n    pass\n", f"helpers.py:3: {NOT_ON_A_COLLECTED_TEST}"),
    ("test_b.py", "from pytest import mark\n\n@mark.claim('three')\ndef helper():\n    pass\n",
     f"test_b.py:5: {NOT_ON_A_COLLECTED_TEST}"),
    ("test_b.py", "@pytest.mark.claim('  ')\ndef test_x():\n    pass\n", "test_b.py:3: @pytest.mark.claim with an empty"),
    ("test_b.py", "@pytest.mark.claim('three', note='; and more')\ndef test_x():\n    pass\n",
     "test_b.py:3: a claim's note is in parentheses"),
    ("test_b.py", "@pytest.mark.claim('three', 'four')\ndef test_x():\n    pass\n",
     "test_b.py:3: expected @pytest.mark.claim"),
    ("test_b.py", "TEXT = 'three'\n\n@pytest.mark.claim(TEXT)\ndef test_x():\n    pass\n",
     "test_b.py:5: @pytest.mark.claim takes string literals"),
], ids=["on-a-helper", "on-a-class", "in-a-non-Test-class", "in-a-class-with-init", "pytestmark", "nested",
        "not-a-test-file", "mark-imported", "empty-claim", "note-not-in-parentheses", "two-arguments", "not-a-literal"])
def test_a_marker_the_map_cannot_use_is_one_line_naming_its_place(tmp_path, file, source, message):
    """Each of these would otherwise be dropped from the map, or garble its row, without a word."""
    (tmp_path / file).write_text("import pytest\n\n" + source)
    with pytest.raises(claims_map.ClaimsError, match=re.escape(message)):
        claims_map.read_markers(tmp_path)


def test_claims_md_is_sections_then_claims_with_an_optional_status(tmp_path):
    path = tmp_path / "claims.md"
    path.write_text("# Title\n\nprose\n\n## A\n\n- one\n- two → none yet (no test)\n\n## B\n\n- three → n/a (why)\n")
    assert claims_map.read_claims(path) == [claims_map.Claim("A", "one"),
                                            claims_map.Claim("A", "two", "none yet (no test)"),
                                            claims_map.Claim("B", "three", "n/a (why)")]
    for bad, message in (("- first\n", "claims.md:1: a claim before the first"), ("## A\n- \n", "claims.md:2: an empty"),
                         ("## A\n- one → maybe\n", "claims.md:2: expected 'none yet ...' or 'n/a ...'")):
        path.write_text(bad)
        with pytest.raises(claims_map.ClaimsError, match=re.escape(message)):
            claims_map.read_claims(path)


def test_a_row_lists_its_tests_in_file_then_line_order_and_a_weak_note_counts_it_weak():
    claims = [claims_map.Claim("A", "one"), claims_map.Claim("A", "two"), claims_map.Claim("B", "three", "none yet"),
              claims_map.Claim("B", "four", "n/a (a pointer)")]
    markers = [claims_map.Marker("one", "tests/a.py::test_1", "(weak: half of it)"),
               claims_map.Marker("one", "tests/b.py::test_2"), claims_map.Marker("two", "tests/b.py::test_3", "(2 cases)")]
    text = claims_map.render(claims, markers)
    assert text.startswith(claims_map.INTRO)
    assert text.split(claims_map.INTRO)[1] == (
        "\n\n## A\n\n| claim | test |\n|---|---|\n"
        "| one | `tests/a.py::test_1` (weak: half of it), `tests/b.py::test_2` |\n"
        "| two | `tests/b.py::test_3` (2 cases) |\n\n"
        "## B\n\n| claim | test |\n|---|---|\n| three | none yet |\n| four | n/a (a pointer) |\n\n"
        "## Counts\n\nRows marked n/a (1) are not counted.\n\n"
        "- claims: 3\n- with a test: 2, of which weak: 1 (1 fully asserted)\n- none yet: 1\n")


def test_the_counts_are_the_rows_counted_again():
    text = (REPO / "tests/README.md").read_text()
    table, counts = text.split("## Counts")
    rows = [re.split(r"(?<!\\)\|", line)[1:-1] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| claim |")]
    last = [cells[-1].strip() for cells in rows]
    counted = [cell for cell in last if not cell.startswith("n/a")]
    tested = [cell for cell in counted if not cell.startswith("none yet")]
    weak = [cell for cell in tested if "(weak" in cell]
    assert f"Rows marked n/a ({len(last) - len(counted)}) are not counted." in counts
    assert f"- claims: {len(counted)}\n" in counts and f"- none yet: {len(counted) - len(tested)}\n" in counts
    assert f"- with a test: {len(tested)}, of which weak: {len(weak)} ({len(tested) - len(weak)} fully" in counts
