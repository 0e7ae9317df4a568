"""An Apptainer definition file (.def) read into one typed record, as `apptainer build` reads it.

The file is split into its header and sections by Apptainer's rules (a line starting with `%NAME` opens section
NAME; section text is kept as written, dedented, so here-documents and blank lines survive); spython (the
Singularity recipe parser on PyPI) reads it too, and every line it finds in a section must be in the same section
here: a cross-check, since spython's own reading drops lines (any line containing "bootstrap" or "from:", repeated
comments) and knows `Bootstrap: docker` only. Added for a build: `Bootstrap: debootstrap`, the header keywords beside
`From:` (OSVersion, MirrorURL, Include), and `%arguments` with Apptainer's `{{ NAME }}` build-argument substitution.
Left out, with an error naming the line: several stages (`Bootstrap:` twice), section arguments (`%post -c bash`,
`%files from stage`), SCIF apps (`%appinstall` ...), and unknown sections (a typo such as `%poost`).

Example:
    recipe = read_recipe("install/experiments_manager_debian.def", {"CUDA_WHEELS": "no"})
    recipe.bootstrap, recipe.header["OSVersion"], recipe.files[0]   # 'debootstrap', 'bookworm', ('setup.cfg', ...)
"""

from __future__ import annotations

import re
import shlex
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from spython.main.parse.parsers import SingularityParser

ARGUMENT = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
SECTION = re.compile(r"%([A-Za-z]+)\b(.*)$")
SCRIPTS = ("setup", "post", "environment", "runscript", "startscript", "test", "help")
SECTIONS = ("arguments", "files", "labels", *SCRIPTS)


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
        files: `%files` as (source, destination) pairs, read as a shell would split them (quotes kept together);
            a line with one path copies it to the same path; comment lines skipped.
        setup, post, environment, runscript, startscript, test, help: each script section's lines as written,
            dedented, leading and trailing blank lines dropped; () where the section is absent.
        labels: `%labels`, the first word of each line as the key.

    Example:
        Recipe(path=Path("x.def"), bootstrap="debootstrap", header={"OSVersion": "bookworm"}, post=("echo hi",))
    """

    path: Path
    bootstrap: str
    header: dict[str, str] = field(default_factory=dict)
    arguments: dict[str, str] = field(default_factory=dict)
    files: tuple[tuple[str, str], ...] = ()
    setup: tuple[str, ...] = ()
    post: tuple[str, ...] = ()
    environment: tuple[str, ...] = ()
    runscript: tuple[str, ...] = ()
    startscript: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    help: tuple[str, ...] = ()

    def body(self) -> dict[str, object]:
        """The sections two recipes of one image share: everything but the header and the build arguments."""
        return {name: getattr(self, name) for name in (*SCRIPTS, "files", "labels")}


class _SpythonReading(SingularityParser):  # type: ignore[misc]  # spython has no type hints
    """spython's parser, keeping every section's lines as it reads them (for the cross-check)."""

    def __init__(self, path: Path, lines: list[str]) -> None:
        self.sections: dict[str, list[str]] = {}
        super().__init__(str(path), load=False)
        self.lines = lines
        self.parse()

    def _check_bootstrap(self, line: str) -> None:  # spython raises NotImplementedError for all but docker
        pass

    def _get_mapping(self, section: str) -> Callable[..., None]:
        name = section.lower()
        return lambda lines, layer=None: self.sections.setdefault(name, []).extend(lines)


def _split(path: Path, lines: list[str]) -> tuple[list[tuple[int, str]], dict[str, list[str]]]:
    """The header lines (numbered) and each section's raw lines, by Apptainer's rules."""
    header: list[tuple[int, str]] = []
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(lines, start=1):
        text = line.rstrip("\n")
        match = SECTION.match(text)
        if match:
            name, rest = match.group(1).lower(), match.group(2).split("#", 1)[0].strip()
            if name.startswith("app"):
                raise RecipeError(f"{path}:{number}: %{match.group(1)}: SCIF apps are not supported by this reader")
            if name not in SECTIONS:
                raise RecipeError(f"{path}:{number}: unknown section %{match.group(1)} "
                                  f"(expected one of: {', '.join('%' + known for known in SECTIONS)})")
            if rest:
                raise RecipeError(f"{path}:{number}: %{name} {rest}: section arguments are not supported by this "
                                  "reader (one stage, /bin/sh scripts)")
            if name in sections:
                raise RecipeError(f"{path}:{number}: %{name} appears twice (expected each section once)")
            current = sections[name] = []
        elif current is not None:
            current.append(text)
        else:
            header.append((number, text))
    return header, sections


def _header(path: Path, lines: list[tuple[int, str]]) -> tuple[str, dict[str, str]]:
    bootstrap: str | None = None
    header: dict[str, str] = {}
    for number, line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition(":")
        if not sep:
            raise RecipeError(f"{path}:{number}: header line {stripped!r}: expected 'Keyword: value'")
        value = value.split("#", 1)[0].strip()
        if key.strip().lower() == "bootstrap":
            if bootstrap is not None:
                raise RecipeError(f"{path}:{number}: a second 'Bootstrap:': multi-stage recipes are not supported "
                                  "by this reader")
            bootstrap = value.lower()
        else:
            header[key.strip()] = value
    if not bootstrap:
        raise RecipeError(f"{path}: no 'Bootstrap:' header line")
    return bootstrap, header


def _script(lines: list[str]) -> tuple[str, ...]:
    return tuple(textwrap.dedent("\n".join(lines)).strip("\n").splitlines())


def _meaningful(lines: list[str]) -> list[str]:
    return [stripped for stripped in (line.strip() for line in lines) if stripped and not stripped.startswith("#")]


def _arguments(path: Path, lines: list[str]) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for line in _meaningful(lines):
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise RecipeError(f"{path}: %arguments line {line!r}: expected NAME=default")
        defaults[key.strip()] = value.split("#", 1)[0].strip()
    return defaults


def _files(path: Path, lines: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for line in _meaningful(lines):
        try:
            parts = shlex.split(line)
        except ValueError as error:
            raise RecipeError(f"{path}: %files line {line!r}: {error}") from None
        if len(parts) > 2:
            raise RecipeError(f"{path}: %files line {line!r}: expected 'SOURCE [DESTINATION]', got {len(parts)} "
                              "words (quote a path with spaces)")
        pairs.append((parts[0], parts[-1]))
    return tuple(pairs)


def _cross_check(path: Path, lines: list[str], sections: dict[str, list[str]]) -> None:
    """Every line spython reads into a section is in that section here, in the same order."""
    for name, theirs in _SpythonReading(path, lines).sections.items():
        ours = iter(line.strip() for line in sections.get(name, ()))
        missing = [line for line in theirs if line not in ours]
        if name in SECTIONS and missing:
            raise RecipeError(f"{path}: %{name}: spython reads {missing[0]!r} there and this reader does not "
                              "(report it with the recipe)")


def read_recipe(path: str | Path, build_args: Mapping[str, str] | None = None) -> Recipe:
    """The definition file at `path`, `build_args` overriding its `%arguments` defaults, as `--build-arg` does.

    Args:
        path: the .def file.
        build_args: NAME -> value; default None (the `%arguments` defaults only).

    Raises:
        RecipeError: one line naming the file (and line where there is one) for an unreadable file, an unknown
            build argument, a `{{ NAME }}` with no value, a missing `Bootstrap:`, a header line that is not
            `Keyword: value`, an unknown or repeated section, or what this reader leaves out (see the module).

    Example:
        read_recipe("install/experiments_manager_debian.def", {"CUDA_WHEELS": "no"}).arguments
        # {'CUDA_WHEELS': 'no'}
    """
    path = Path(path)
    try:
        raw = path.read_text().splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as error:
        raise RecipeError(f"{path}: cannot read the definition file: {getattr(error, 'strerror', error)}") from None
    defaults = _arguments(path, _split(path, raw)[1].get("arguments", []))
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
    header_lines, sections = _split(path, lines)
    bootstrap, header = _header(path, header_lines)
    _cross_check(path, lines, sections)
    labels = dict((line.split(None, 1) + [""])[:2] for line in _meaningful(sections.get("labels", [])))
    scripts = {name: _script(sections.get(name, [])) for name in SCRIPTS}
    return Recipe(path=path, bootstrap=bootstrap, header=header, arguments=values,
                  files=_files(path, sections.get("files", [])), labels=labels, **scripts)
