"""Hparam overrides (`--hparam key=value`, `em.train(path, {...})`) merged into a settings file in memory.

A settings file is never rewritten on disk: the loader inserts a merge right after each module-level statement that
assigns or mutates `hparams` (an AST pass), so module-level code such as `nbEpoch = hparams['nbEpoch']` sees the
overrides. An override must name a key of the file's hparams (or a setting, `nbEpoch`): a misspelt one
(`embed_dimm`) would add an hparam no code reads and name the run after it, so it is refused before training, with
the closest key. A new hparam is asked for explicitly: `--hparam +name=value` (`{"+name": value}` in Python).
"""

from __future__ import annotations

import ast
import logging
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

from experiments_manager.settings.spelling import closest_hparam
from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    import types

MERGE_FUNCTION_NAME = "__experiments_manager_merge_hparams__"
ENGINE_HPARAMS = ("procID",)  # set by the engine (a federated client's id): no warning when the file lacks them
NEW_HPARAM = "+"  # `--hparam +name=value`: name is a new hparam, not a key of the settings' hparams
_LOG = logging.getLogger(__name__)


def parse_hparam_overrides(pairs: Optional[Iterable[str]]) -> dict[str, Any]:
    """Parses `key=value` strings; values are Python literals, else strings.

    Args:
        pairs: iterable of strings such as `"nbEpoch=3"` or `"federated=FedAvg"`.

    Returns:
        dict of key -> value.

    Example:

    ```python
    parse_hparam_overrides(["lr=0.1", "name=abc"])  # {'lr': 0.1, 'name': 'abc'}
    ```
    """
    overrides: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key.removeprefix(NEW_HPARAM).isidentifier():
            raise UserInputError(f"--hparam: {pair!r}: expected key=value (or +key=value for a new hparam) with key a "
                                 "Python name")
        overrides[key] = literal_or_text(text)
    return overrides


def split_new_hparams(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], frozenset[str]]:
    """(the overrides by hparam name, the names asked for as new hparams: `+name`).

    Example:

    ```python
    split_new_hparams({"lr": 0.1, "+dropout": 0.2})     # ({'lr': 0.1, 'dropout': 0.2}, frozenset({'dropout'}))
    ```
    """
    names = {key: key.removeprefix(NEW_HPARAM) for key in overrides}
    return ({names[key]: value for key, value in overrides.items()},
            frozenset(names[key] for key in overrides if key.startswith(NEW_HPARAM)))


def literal_or_text(text: str) -> Any:
    """A command-line value: a Python literal (`3`, `0.5`, `True`, `[1, 2]`), else the text itself (`adam`)."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


class HparamMerge:
    """The merge a settings module calls after each statement that sets `hparams`; remembers the keys the file set.

    Args:
        overrides: the overrides, by hparam name.
        file_name: the settings file's name, for messages.
        setting_names: names of settings (`nbEpoch`): an override so named needs no hparam of that name
            (`apply_to_settings` says what happens to them).
        new: names asked for as new hparams (`+name`).
        strict: refuse an override that is no key of the file's hparams (default True; False: add it with one
            warning line, for a run's recorded overrides, accepted when it started).

    Example:

    ```python
    merge = HparamMerge({"embed_dimm": 4}, "mysettings.py", NAMES, frozenset())
    hparams = merge({"embed_dim": 16})
    merge.problems()     # ["mysettings.py: hparams: --hparam embed_dimm=4: expected a key of hparams ..."]
    ```
    """

    def __init__(self, overrides: Mapping[str, Any], file_name: str, setting_names: Iterable[str] = frozenset(),
                 new: Iterable[str] = frozenset(), strict: bool = True) -> None:
        self.overrides = dict(overrides)
        self.file_name = file_name
        self.allowed = set(ENGINE_HPARAMS) | set(setting_names) | set(new)
        self.strict = strict
        self.known: dict[Any, None] = {}  # the keys the file's own hparams had, in order
        self._warned: set[str] = set()
        self._merged = False

    def __call__(self, hparams: Any) -> Any:
        if isinstance(hparams, dict):
            for key, value in hparams.items():  # the file's own: all before a merge, then what it set since
                if key not in self.overrides or not self._merged or value is not self.overrides[key]:
                    self.known.setdefault(key, None)
            for key in sorted(self.unknown() - self._warned) if not self.strict else ():
                self._warned.add(key)
                _LOG.warning("%s: hparam %r is not in the settings' hparams: added", self.file_name, key)
            hparams.update(self.overrides)
            self._merged = True
        return hparams

    def unknown(self) -> set[str]:
        """The overrides that name no key of the file's hparams, no setting and no new hparam."""
        return set(self.overrides) - set(self.known) - self.allowed

    def problems(self) -> list[str]:
        """One line per override the file does not know (strict), with the closest key."""
        if not self.strict:
            return []
        lines: list[str] = []
        known = list(self.known)
        for key in sorted(self.unknown()):
            close = closest_hparam(key, known)
            hint = f" (did you mean {close!r}?)" if close else ""
            lines.append(f"{self.file_name}: hparams: --hparam {key}={self.overrides[key]!r}: expected a key of the "
                         f"settings' hparams ({', '.join(known) or 'none'}), got {key!r}{hint}; a new hparam is "
                         f"added explicitly: --hparam {NEW_HPARAM}{key}=... ({{'{NEW_HPARAM}{key}': ...}} in Python)")
        return lines


def apply_to_settings(module: types.ModuleType, overrides: Mapping[str, Any], setting_names: Iterable[str],
                      file_name: str) -> None:
    """Sets the module-level settings the overrides name to their values, when the file did not already make them
    so: `--hparam nbEpoch=2` of a file that writes `nbEpoch = 8` (not `nbEpoch = hparams['nbEpoch']`) trains 2
    epochs, as the run's folder name says. One line each."""
    for key in sorted(overrides.keys() & set(setting_names)):
        if key in vars(module) and getattr(module, key) == overrides[key]:
            continue  # `nbEpoch = hparams['nbEpoch']`: the override already reached it
        was = f"the file says {getattr(module, key)!r}" if key in vars(module) else "the file does not set it"
        _LOG.warning("%s: --hparam %s=%r: %s is a setting: this run's %s is %r (%s)", file_name, key,
                     overrides[key], key, key, overrides[key], was)
        setattr(module, key, overrides[key])


def _assigns_hparams(statement: ast.stmt) -> bool:
    targets: list[ast.expr] = []
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
        targets = [statement.target]
    elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
        function = statement.value.func  # hparams.update(...) and friends
        targets = [function.value] if isinstance(function, ast.Attribute) else []
    for target in targets:
        while isinstance(target, (ast.Subscript, ast.Attribute)):
            target = target.value
        if isinstance(target, ast.Name) and target.id == "hparams":
            return True
        if isinstance(target, ast.Tuple) and any(
            isinstance(element, ast.Name) and element.id == "hparams" for element in target.elts
        ):
            return True
    return False


def _merge_statement(after: ast.stmt) -> ast.stmt:
    statement = ast.parse(f"hparams = {MERGE_FUNCTION_NAME}(hparams)").body[0]
    return ast.copy_location(statement, after)


def with_merges(statements: list[ast.stmt]) -> list[ast.stmt]:
    """Inserts a merge after module-level statements that set hparams.

    Recurses into module-level if/try/with/for blocks, not into functions or
    classes, whose code runs later and reads the already merged dict.
    """
    result: list[ast.stmt] = []
    for statement in statements:
        for field in ("body", "orelse", "finalbody"):
            block = getattr(statement, field, None)
            if isinstance(block, list) and not isinstance(
                statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
            ):
                setattr(statement, field, with_merges(block))
        for handler in getattr(statement, "handlers", []):
            handler.body = with_merges(handler.body)
        result.append(statement)
        if _assigns_hparams(statement):
            result.append(_merge_statement(statement))
    return result
