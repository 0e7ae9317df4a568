#!/usr/bin/env python3
"""Writes tests/README.md, the map of what the tests prove, from its two sources:

- `tests/claims.md`: every documented claim, by section, in the documentation's order; a claim no test asserts yet
  ends with ` → none yet (why)`, a sentence that is not a promise with ` → n/a (why)`;
- the `@pytest.mark.claim("claim text", note="(...)")` markers on the tests: the test proves that claim (`note`, in
  parentheses: what a reader should know, shown after the test; "(weak: ...)" where it touches the claim without
  fully asserting it, which counts the claim as weak).

The tests are read with `ast` (nothing is imported: fast, no TensorFlow). `--check` exits 1 when tests/README.md is
not what this would write, or a claim has no test and is not marked "none yet" / "n/a", or a marker names a claim
that tests/claims.md lacks (tests/unit/tools/test_claims_map.py runs it in `make test`). A marker anywhere but on a test
function or method pytest collects (a class, a helper, `pytestmark`) is an error: it would prove nothing.
A claim with several tests lists them in file, then line order.

Example:
    .venv/bin/python tools/claims_map.py            # rewrite tests/README.md (`make claims`)
    .venv/bin/python tools/claims_map.py --check    # what CI checks
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
CLAIMS = TESTS / "claims.md"
MAP = TESTS / "README.md"
ARROW = " → "
NONE_YET = "none yet"
NOT_A_PROMISE = "n/a"
WEAK = "(weak"
COLLECTED_PREFIX = "test"  # pytest's default python_functions and (capitalised) python_classes

INTRO = """# What the tests prove

Every claim of the documentation, and the tests that prove it. **Generated** by `tools/claims_map.py` (`make claims`)
from `tests/claims.md` (the documented claims, in the documentation's order) and the `@pytest.mark.claim("...")`
markers on the tests: do not edit it by hand. To add a claim, add its line to `tests/claims.md` and mark the test that
proves it with `@pytest.mark.claim("the same text")` (`note="(weak: ...)"` where the test touches the claim without
fully asserting it). "none yet" marks a claim no test asserts: the place to add one. "n/a" marks a sentence that is
not a promise (a limitation, a pointer to another document); n/a rows are left out of the counts.
"""


@dataclasses.dataclass(frozen=True)
class Claim:
    """One documented claim (a line of tests/claims.md).

    Args:
        section: the heading it is under.
        text: the claim, as the markers name it.
        status: '' for a claim tests prove, else its 'none yet (...)' or 'n/a (...)' text.
    """

    section: str
    text: str
    status: str = ""


@dataclasses.dataclass(frozen=True)
class Marker:
    """One `@pytest.mark.claim(text, note=...)` on a test.

    Args:
        claim: the claim's text.
        node: the test's pytest id (`tests/file.py::test_name`, `::Class::test_name` for a method).
        note: what the map says after the test, in parentheses (default '').
        line: the decorator's line, for messages.
    """

    claim: str
    node: str
    note: str = ""
    line: int = 0


class ClaimsError(ValueError):
    """tests/claims.md or a marker that cannot be read: one line naming the file."""


def read_claims(path: Path = CLAIMS) -> list[Claim]:
    """The claims of `path` (a `## Section` heading, then `- claim[ → status]` lines), in order."""
    claims: list[Claim] = []
    section = ""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("- "):
            if not section:
                raise ClaimsError(f"{path}:{number}: a claim before the first '## ' section")
            text, _, status = line[2:].partition(ARROW)
            if not text.strip():
                raise ClaimsError(f"{path}:{number}: an empty claim")
            if status and not status.startswith((NONE_YET, NOT_A_PROMISE)):
                raise ClaimsError(f"{path}:{number}: expected '{NONE_YET} ...' or '{NOT_A_PROMISE} ...' after "
                                  f"'{ARROW.strip()}', got {status!r}")
            claims.append(Claim(section, text.strip(), status.strip()))
    return claims


def _claim_call(node: ast.AST) -> ast.Call | None:
    """The `pytest.mark.claim(...)` (or `mark.claim(...)`) call that `node` is, or None."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "claim":
        owner = node.func.value
        if (isinstance(owner, ast.Attribute) and owner.attr == "mark") or \
                (isinstance(owner, ast.Name) and owner.id == "mark"):
            return node
    return None


def _string(node: ast.expr, where: str) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    raise ClaimsError(f"{where}: @pytest.mark.claim takes string literals")


def _test_functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """The functions of a module pytest collects, by their pytest id after the file: `test_*` functions, and
    `test_*` methods of `Test*` classes without an `__init__`."""
    functions: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith(COLLECTED_PREFIX):
            functions.append((node.name, node))
        elif isinstance(node, ast.ClassDef) and node.name.startswith(COLLECTED_PREFIX.capitalize()):
            methods = [item for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))]
            if all(method.name != "__init__" for method in methods):
                functions += [(f"{node.name}::{method.name}", method) for method in methods
                              if method.name.startswith(COLLECTED_PREFIX)]
    return functions


def read_markers(tests: Path = TESTS) -> list[Marker]:
    """Every claim marker on the test functions (and test methods of classes) of `tests/**/test_*.py` (and
    `*_test.py`, pytest's default test files), by file, then line.

    Raises:
        ClaimsError: a marker pytest would not see on a collected test, or not of the form
            `@pytest.mark.claim("claim text", note="(...)")`.
    """
    markers: list[Marker] = []
    for path in sorted(tests.rglob("*.py")):
        relative = path.relative_to(tests.parent).as_posix()
        source = path.read_text()
        if ".claim(" not in source:
            continue
        tree = ast.parse(source, str(path))
        placed: set[int] = set()
        test_file = path.name.startswith("test_") or path.name.endswith("_test.py")
        for name, function in _test_functions(tree) if test_file else []:
            for decorator in function.decorator_list:
                call = _claim_call(decorator)
                if call is None:
                    continue
                placed.add(id(call))
                markers.append(_marker(call, f"{relative}::{name}", f"{relative}:{call.lineno}"))
        for node in ast.walk(tree):
            call = _claim_call(node)
            if call is not None and id(call) not in placed:
                raise ClaimsError(f"{relative}:{call.lineno}: a claim marker that is not a decorator of a test "
                                  "function pytest collects (test_* functions, test_* methods of Test* classes, "
                                  "in test_*.py files)")
    return markers


def _marker(call: ast.Call, node: str, where: str) -> Marker:
    """The Marker a `pytest.mark.claim(...)` decorator of test `node` makes."""
    if len(call.args) != 1 or any(keyword.arg != "note" for keyword in call.keywords):
        raise ClaimsError(f"{where}: expected @pytest.mark.claim(\"claim text\", note=\"(...)\")")
    claim = _string(call.args[0], where)
    note = next((_string(keyword.value, where) for keyword in call.keywords if keyword.arg == "note"), "")
    if not claim.strip():
        raise ClaimsError(f"{where}: @pytest.mark.claim with an empty claim")
    if note and not (note.startswith("(") and note.endswith(")")):
        raise ClaimsError(f"{where}: a claim's note is in parentheses (it follows the test in the map), got {note!r}")
    return Marker(claim, node, note, call.lineno)


def problems(claims: list[Claim], markers: list[Marker]) -> list[str]:
    """What makes the map wrong: a marker naming an unknown claim, a claim proved by no test and not marked
    'none yet' or 'n/a', a 'none yet' or 'n/a' claim that a test now names, a claim listed twice."""
    found = []
    known: dict[str, Claim] = {}
    for claim in claims:
        if claim.text in known:
            found.append(f"tests/claims.md: {claim.text!r} is listed twice")
        known[claim.text] = claim
    marked = {marker.claim for marker in markers}
    for marker in markers:
        if marker.claim not in known:
            found.append(f"{marker.node.partition('::')[0]}:{marker.line}: @pytest.mark.claim({marker.claim!r}): "
                         "not a claim of tests/claims.md (add it there, or fix the text)")
    for claim in claims:
        if not claim.status and claim.text not in marked:
            found.append(f"tests/claims.md: {claim.text!r}: no test is marked with it (mark one, or add "
                         f"'{ARROW.strip()} {NONE_YET} (why)')")
        if claim.status and claim.text in marked:
            found.append(f"tests/claims.md: {claim.text!r} says {claim.status.split()[0]!r} but a test is marked "
                         "with it: drop the status")
    return found


def render(claims: list[Claim], markers: list[Marker]) -> str:
    """tests/README.md's text: the intro, a table per section, the counts."""
    by_claim: dict[str, list[Marker]] = {}
    for marker in markers:
        by_claim.setdefault(marker.claim, []).append(marker)
    lines = [INTRO]
    section = None
    counted = tested = weak = none_yet = not_a_promise = 0
    for claim in claims:
        if claim.section != section:
            section = claim.section
            lines += [f"## {section}", "", "| claim | test |", "|---|---|"]
        proofs = by_claim.get(claim.text, [])
        cell = ", ".join(f"`{marker.node}`" + (f" {marker.note}" if marker.note else "") for marker in proofs)
        lines.append(f"| {claim.text} | {cell or claim.status} |")
        if claim.status.startswith(NOT_A_PROMISE):
            not_a_promise += 1
            continue
        counted += 1
        tested += bool(proofs)
        weak += any(marker.note.startswith(WEAK) for marker in proofs)
        none_yet += not proofs
    text = "\n".join(_blank_between_sections(lines))
    return text + (f"\n\n## Counts\n\nRows marked n/a ({not_a_promise}) are not counted.\n\n"
                   f"- claims: {counted}\n- with a test: {tested}, of which weak: {weak} ({tested - weak} fully "
                   f"asserted)\n- none yet: {none_yet}\n")


def _blank_between_sections(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line.startswith("## ") and out and out[-1] != "":
            out.append("")
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    """The command: write tests/README.md, or with `--check` say what is wrong with it; 0 when all is well."""
    parser = argparse.ArgumentParser(prog="tools/claims_map.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when tests/README.md is out of date or wrong")
    options = parser.parse_args(argv)
    try:
        claims, markers = read_claims(), read_markers()
    except (ClaimsError, SyntaxError) as error:
        print(f"claims_map: {error}", file=sys.stderr)
        return 2
    found = problems(claims, markers)
    text = render(claims, markers)
    if options.check:
        if MAP.read_text() != text:
            found.append("tests/README.md is not what tools/claims_map.py writes: run `make claims`")
        for problem in found:
            print(f"claims_map: {problem}", file=sys.stderr)
        return 1 if found else 0
    MAP.write_text(text)
    for problem in found:
        print(f"claims_map: {problem}", file=sys.stderr)
    print(f"wrote {MAP.relative_to(ROOT)} ({len(claims)} claims, {len(markers)} markers)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
