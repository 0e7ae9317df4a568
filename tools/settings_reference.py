"""Prints (or, with --write, puts into docs/reference/settings.md) the settings reference made from `sections.py`.

Usage: python tools/settings_reference.py [--write]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments_manager.settings.sections import reference_markdown  # noqa: E402

SETTINGS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "settings.md"
START = "<!-- settings reference: generated"
END = "<!-- settings reference end -->"


def with_reference(page_text):
    """The page's text with the generated reference between its two markers."""
    head, start, rest = page_text.partition(START)
    marker_rest, _, tail = rest.partition("\n")
    _, end, after = tail.partition(END)
    if not start or not end:
        raise SystemExit(f"{SETTINGS_PAGE}: the settings reference markers are missing")
    return f"{head}{start}{marker_rest}\n\n{reference_markdown()}\n{end}{after}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true",
                        help="rewrite docs/reference/settings.md's settings reference in place")
    arguments = parser.parse_args()
    if arguments.write:
        SETTINGS_PAGE.write_text(with_reference(SETTINGS_PAGE.read_text()))
        print(f"wrote the settings reference into {SETTINGS_PAGE}")
    else:
        print(reference_markdown(), end="")


if __name__ == "__main__":
    main()
