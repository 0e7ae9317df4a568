"""An Apptainer definition file (.def) read into one typed record, with spython's Singularity parser.

spython (the Singularity recipe parser on PyPI) reads the sections; this module adds what it leaves out for a
build: `Bootstrap: debootstrap` (spython accepts only docker), the header keywords beside `From:` (OSVersion,
MirrorURL, Include), `%arguments` with Apptainer's `{{ NAME }}` build-argument substitution, and `%test` kept as a
script (spython turns it into `echo` lines appended to %post). Section lines come back stripped of indentation,
blank lines dropped, as spython gives them: enough for shell sections, not for indentation-sensitive here-documents.

Example:
    recipe = read_recipe("install/experiments_manager_debian.def", {"CUDA_WHEELS": "no"})
    recipe.bootstrap, recipe.header["OSVersion"], recipe.files[0]   # 'debootstrap', 'bookworm', ('setup.cfg', ...)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from spython.main.parse.parsers import SingularityParser

ARGUMENT = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
SECTIONS = ("arguments", "files", "post", "environment", "runscript", "test", "labels", "help")


class RecipeError(ValueError):
    """A definition file that cannot be built as written: the message is one line naming the file."""


@dataclass(frozen=True)
class Recipe:
    """One Apptainer definition file, build arguments substituted.

    Args:
        path: the .def file.
        bootstrap: the `Bootstrap:` agent, lower case ('docker', 'debootstrap', ...).
        header: the other header keywords as written (`From`, `OSVersion`, `MirrorURL`, `Include`, ...).
        arguments: the build arguments in effect: `%arguments` defaults, then the ones given.
        files: `%files` as (source, destination) pairs; a line with one path copies it to the same path.
        post, environment, runscript, test, help: the section lines, stripped, blank lines dropped.
        labels: `%labels`, the first word of each line as the key.
    """

    path: Path
    bootstrap: str
    header: dict[str, str] = field(default_factory=dict)
    arguments: dict[str, str] = field(default_factory=dict)
    files: tuple[tuple[str, str], ...] = ()
    post: tuple[str, ...] = ()
    environment: tuple[str, ...] = ()
    runscript: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    help: tuple[str, ...] = ()

    def body(self) -> dict[str, object]:
        """The sections two recipes of one image share: everything but the header and the build arguments."""
        return {"files": self.files, "post": self.post, "environment": self.environment,
                "runscript": self.runscript, "test": self.test, "labels": self.labels, "help": self.help}


class _DefParser(SingularityParser):
    """spython's parser, keeping every section this builder needs as its lines."""

    def __init__(self, path: Path, lines: list[str]) -> None:
        self.bootstrap: str | None = None
        self.sections: dict[str, list[str]] = {name: [] for name in SECTIONS}
        super().__init__(str(path), load=False)
        self.lines = lines
        self.parse()

    def _check_bootstrap(self, line: str) -> None:  # spython raises NotImplementedError for all but docker
        key, _, value = line.partition(":")
        if key.strip().lower() == "bootstrap" and self.bootstrap is None:
            self.bootstrap = value.split("#", 1)[0].strip().lower()

    def _get_mapping(self, section: str) -> Callable[..., None]:
        name = section.lower()
        if name in self.sections:
            return lambda lines, layer=None: self.sections[name].extend(lines)
        return self._comments


def _header(path: Path, lines: list[str]) -> dict[str, str]:
    header: dict[str, str] = {}
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("%"):
            break
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition(":")
        if not sep:
            raise RecipeError(f"{path}: header line {stripped!r}: expected 'Keyword: value'")
        header[key.strip()] = value.split("#", 1)[0].strip()
    return header


def _arguments(path: Path, lines: list[str]) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for line in lines:
        if line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise RecipeError(f"{path}: %arguments line {line!r}: expected NAME=default")
        defaults[key.strip()] = value.split("#", 1)[0].strip()
    return defaults


def read_recipe(path: str | Path, build_args: Mapping[str, str] | None = None) -> Recipe:
    """Reads `path` with spython; `build_args` override the `%arguments` defaults, as `--build-arg` does.

    Raises RecipeError (one line naming the file) for an unknown build argument, a `{{ NAME }}` with no value,
    a missing `Bootstrap:` or a header line that is not `Keyword: value`.
    """
    path = Path(path)
    try:
        raw = path.read_text().splitlines(keepends=True)
    except OSError as error:
        raise RecipeError(f"{path}: cannot read the definition file: {error.strerror}") from None
    defaults = _arguments(path, _DefParser(path, raw).sections["arguments"])
    given = dict(build_args or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise RecipeError(f"{path}: --build-arg {', '.join(unknown)}: not in %arguments "
                          f"(expected one of: {', '.join(sorted(defaults)) or 'none'})")
    values = {**defaults, **given}
    used = {name for line in raw for name in ARGUMENT.findall(line)}
    undefined = sorted(used - set(values))
    if undefined:
        raise RecipeError(f"{path}: {{{{ {undefined[0]} }}}} has no value: add it to %arguments or pass --build-arg")
    lines = [ARGUMENT.sub(lambda match: values[match.group(1)], line) for line in raw]
    parser = _DefParser(path, lines)
    if not parser.bootstrap:
        raise RecipeError(f"{path}: no 'Bootstrap:' header line")
    header = _header(path, lines)
    header.pop("Bootstrap", None)
    sections = parser.sections
    files = []
    for line in sections["files"]:
        parts = line.split()
        files.append((parts[0], parts[1] if len(parts) > 1 else parts[0]))
    labels = dict((line.split(None, 1) + [""])[:2] for line in sections["labels"] if not line.startswith("#"))
    return Recipe(path=path, bootstrap=parser.bootstrap, header=header, arguments=values, files=tuple(files),
                  post=tuple(sections["post"]), environment=tuple(sections["environment"]),
                  runscript=tuple(sections["runscript"]), test=tuple(sections["test"]), labels=labels,
                  help=tuple(sections["help"]))
