"""Prints (or, with --write, puts into the README) the settings reference generated from `sections.py`.

Usage: python tools/settings_reference.py [--write]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments_manager.settings.sections import reference_markdown  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
START = "<!-- settings reference: generated"
END = "<!-- settings reference end -->"


def with_reference(readme_text):
    """The README text with the generated reference between its two markers."""
    head, start, rest = readme_text.partition(START)
    marker_rest, _, tail = rest.partition("\n")
    _, end, after = tail.partition(END)
    if not start or not end:
        raise SystemExit(f"{README}: the settings reference markers are missing")
    return f"{head}{start}{marker_rest}\n\n{reference_markdown()}\n{end}{after}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite README.md's settings reference in place")
    arguments = parser.parse_args()
    if arguments.write:
        README.write_text(with_reference(README.read_text()))
        print(f"wrote the settings reference into {README}")
    else:
        print(reference_markdown(), end="")


if __name__ == "__main__":
    main()
