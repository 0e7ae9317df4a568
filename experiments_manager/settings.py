"""Loads a settings module, applies hparam overrides and checks the settings contract.

A settings file is trusted Python code, executed once under a unique module
name. It is never rewritten on disk: command-line hparam overrides are merged
into `hparams` by an in-memory AST pass, right after each module-level
statement that assigns or mutates `hparams`, so module-level code such as
`nbEpoch = hparams['nbEpoch']` sees them.
"""

import ast
import importlib.util
import logging
import sys
import traceback
import uuid
from pathlib import Path

from experiments_manager import contract
from experiments_manager.errors import UserInputError

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
        try:
            overrides[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            overrides[key] = text.strip()
    return overrides


class Settings:
    """A loaded and validated settings module.

    Attributes of the module are reachable as attributes of this object,
    defaults of the contract filled in.

    Args:
        module: the executed settings module.
        path: the settings file.
        model_file: the resolved model file.
        overrides: the hparam overrides that were applied.
    """

    def __init__(self, module, path, model_file, overrides):
        self.module = module
        self.path = Path(path)
        self.model_file = Path(model_file)
        self.overrides = dict(overrides)

    @property
    def model_name(self):
        """The served model name: the model file's name without `.py`."""
        return self.model_file.stem

    def __getattr__(self, name):
        try:
            return getattr(self.module, name)
        except AttributeError:
            raise AttributeError(f"settings {self.path.name} define no {name!r}") from None


def load_settings(path, hparam_overrides=None, model_file=None):
    """Executes and validates a settings file.

    Args:
        path: the settings file.
        hparam_overrides: dict merged into `hparams` as soon as the module
            assigns it (so module-level reads see the overrides).
        model_file: use this model file instead of the settings' `model_file`
            (a resumed run uses the copy in its experiment folder).

    Returns:
        a `Settings`.

    Raises:
        UserInputError: every problem found, one line each.

    Example:

    ```python
    settings = load_settings("examples/regression/mysettings_curve_fitting.py", {"nbEpoch": 2})
    settings.nbEpoch  # 2
    ```
    """
    path = Path(path)
    overrides = dict(hparam_overrides or {})
    if not path.is_file():
        raise UserInputError(f"{path}: settings file not found")
    module = _execute(path, overrides)
    problems = _validate(module, path.name)
    resolved_model_file = None
    if model_file is not None:
        resolved_model_file = Path(model_file)
    elif isinstance(getattr(module, "model_file", None), str):
        resolved_model_file = _resolve_model_file(module.model_file, path, problems)
    if resolved_model_file is not None:
        problems += _check_model_file(resolved_model_file, path.name)
    if problems:
        raise UserInputError(problems)
    _fill_defaults(module)
    return Settings(module, path, resolved_model_file, overrides)


def as_settings(settings, hparam_overrides=None):
    """`settings` when it is a loaded `Settings` (its file was executed once, with its overrides), else the
    settings file at that path, loaded with `hparam_overrides`.

    Example:

    ```python
    settings = as_settings("examples/regression/mysettings_curve_fitting.py", {"nbEpoch": 2})
    as_settings(settings) is settings  # True
    ```
    """
    if isinstance(settings, Settings):
        if hparam_overrides:
            raise ValueError("hparam_overrides: apply them when loading the settings")
        return settings
    return load_settings(settings, hparam_overrides)


def load_experiment_settings(experiment):
    """The settings an experiment ran with: its own copies and its recorded hparam overrides."""
    return load_settings(
        experiment.settings_copy,
        experiment.run_info().get("hparam_overrides"),
        model_file=experiment.model_file_copy(),
    )


def _execute(path, overrides):
    source = path.read_text()
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as error:
        raise UserInputError(f"{path.name}: line {error.lineno}: syntax error: {error.msg}") from None
    tree.body = _with_merges(tree.body)
    ast.fix_missing_locations(tree)
    code = compile(tree, str(path), "exec")

    from experiments_manager.keras_compat import install_keras2_compatibility

    install_keras2_compatibility()
    name = f"experiments_manager_settings_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(path)
    setattr(module, MERGE_FUNCTION_NAME, _merger(overrides, path.name))
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    try:
        exec(code, module.__dict__)
    except Exception as error:  # user code failed at import: report where
        del sys.modules[name]
        line = _line_in(error, str(path))
        raise UserInputError(
            f"{path.name}: line {line}: error while running the settings module: "
            f"{type(error).__name__}: {error}"
        ) from None
    if not hasattr(module, "hparams") and overrides:
        module.hparams = dict(overrides)
    return module


def _merger(overrides, file_name):
    def merge(hparams):
        if isinstance(hparams, dict):
            for key in overrides.keys() - hparams.keys() - set(ENGINE_HPARAMS):
                _LOG.warning("%s: hparam %r is not in the settings' hparams: added", file_name, key)
            hparams.update(overrides)
        return hparams

    return merge


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


def _with_merges(statements):
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
                setattr(statement, field, _with_merges(block))
        for handler in getattr(statement, "handlers", []):
            handler.body = _with_merges(handler.body)
        result.append(statement)
        if _assigns_hparams(statement):
            result.append(_merge_statement(statement))
    return result


def _line_in(error, file_name):
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if frame.filename == file_name]
    return lines[-1] if lines else "?"


def _validate(module, file_name):
    problems = []
    for name, check in contract.REQUIRED.items():
        if not hasattr(module, name):
            problems.append(f"{file_name}: {name}: missing (required by the settings contract)")
            continue
        message = check(getattr(module, name))
        if message:
            problems.append(f"{file_name}: {name}: {message}")
    for name, (default, check) in contract.OPTIONAL.items():
        if check is None or not hasattr(module, name):
            continue
        value = getattr(module, name)
        if value is None and default is None:
            continue
        message = check(value)
        if message:
            problems.append(f"{file_name}: {name}: {message}")
    return problems


def _resolve_model_file(model_file, settings_path, problems):
    candidates = [Path(model_file), settings_path.parent / model_file]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    problems.append(
        f"{settings_path.name}: model_file: file {model_file!r} not found "
        f"(looked in {Path.cwd()} and {settings_path.parent})"
    )
    return None


def _check_model_file(model_file, settings_name):
    if model_file.suffix != ".py":
        return [f"{settings_name}: model_file: expected a .py file, got {str(model_file)!r}"]
    try:
        tree = ast.parse(model_file.read_text(), filename=str(model_file))
    except SyntaxError as error:
        return [f"{model_file.name}: line {error.lineno}: syntax error: {error.msg}"]
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef) and statement.name == "model":
            arguments = statement.args
            if len(arguments.posonlyargs) + len(arguments.args) >= 1 or arguments.vararg:
                return []
            return [f"{model_file.name}: model: expected a function model(usersettings), got one without parameters"]
    return [f"{model_file.name}: model: missing (expected a function model(usersettings) returning a keras.Model)"]


def _fill_defaults(module):
    for name, (default, _) in contract.OPTIONAL.items():
        if not hasattr(module, name):
            setattr(module, name, default.copy() if isinstance(default, (dict, list)) else default)
