"""Hparam overrides (`--hparam key=value`, `em.train(path, {...})`) merged into a settings file in memory.

A settings file is never rewritten on disk: the loader inserts a merge right after each module-level statement that
assigns or mutates `hparams` (an AST pass), so module-level code such as `nbEpoch = hparams['nbEpoch']` sees the
overrides.
"""

import ast
import logging

from experiments_manager.utils.errors import UserInputError

MERGE_FUNCTION_NAME = "__experiments_manager_merge_hparams__"
ENGINE_HPARAMS = ("procID",)  # set by the engine (a federated client's id): no warning when the file lacks them
_LOG = logging.getLogger(__name__)


def parse_hparam_overrides(pairs):
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
    overrides = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UserInputError(f"--hparam: {pair!r}: expected key=value with key a Python name")
        overrides[key] = literal_or_text(text)
    return overrides


def literal_or_text(text: str):
    """A command-line value: a Python literal (`3`, `0.5`, `True`, `[1, 2]`), else the text itself (`adam`)."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def merger(overrides, file_name, setting_names=frozenset()):
    """The merge function a settings module calls after each statement that sets `hparams`.

    An override that is no key of the file's hparams is added, with one warning line, unless it is named like a
    setting (`nbEpoch`): `apply_to_settings` says what happens to those.
    """
    said = set()

    def merge(hparams):
        if isinstance(hparams, dict):
            for key in overrides.keys() - hparams.keys() - set(ENGINE_HPARAMS) - set(setting_names) - said:
                said.add(key)
                _LOG.warning("%s: hparam %r is not in the settings' hparams: added", file_name, key)
            hparams.update(overrides)
        return hparams

    return merge


def apply_to_settings(module, overrides, setting_names, file_name):
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


def _assigns_hparams(statement):
    targets = []
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


def _merge_statement(after):
    statement = ast.parse(f"hparams = {MERGE_FUNCTION_NAME}(hparams)").body[0]
    return ast.copy_location(statement, after)


def with_merges(statements):
    """Inserts a merge after module-level statements that set hparams.

    Recurses into module-level if/try/with/for blocks, not into functions or
    classes, whose code runs later and reads the already merged dict.
    """
    result = []
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
