"""The settings' `model_file`: where it is found, and what it must be.

A bare name is looked for in the current folder first, then beside the settings file; a path with folders in it also
in the folders above the settings file (the examples name theirs from the repository root). When another candidate
exists and differs from the one used, one warning line names both: a `model.py` left in the current folder does not
win silently. The file must be Python, define `model(usersettings)`, and its name (the served model's) must be one a
server accepts.

Example:

```python
problems = []
path = resolve_model_file("model.py", Path("project/settings.py"), problems)   # ./model.py, else project/model.py
problems += check_model_file(path, "settings.py")
```
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Optional

from experiments_manager.run.served_layout import model_name_problem

_LOG = logging.getLogger(__name__)


def resolve_model_file(model_file: str, settings_path: Path, problems: list[str]) -> Optional[Path]:
    """The model file, looked for in the current directory, then in the settings file's folder, then (for a path
    with folders in it) in the folders above it: the examples name theirs from the repository root
    (`examples/regression/model_curve_fitting.py`), so they also run from another folder. When a later candidate
    exists too and differs, one warning line says which file is used and which is not."""
    folder = settings_path.parent
    # a path with folders in it, like the examples', may start above the settings' folder; a bare name may not
    above = folder.resolve().parents if len(Path(model_file).parts) > 1 else []
    candidates = [Path(model_file), folder / model_file, *(parent / model_file for parent in above)]
    found = [candidate for candidate in candidates if candidate.is_file()]
    if found:
        _warn_of_other_model_file(found, settings_path.name)
        return found[0]
    problems.append(
        f"{settings_path.name}: model_file: file {model_file!r} not found "
        f"(looked in {Path.cwd()}, {folder}{' and the folders above it' if above else ''})"
    )
    return None


def _warn_of_other_model_file(found: list[Path], settings_name: str) -> None:
    """One line when the model file used is not the only one found and another differs from it."""
    used = found[0]
    for other in found[1:]:
        if other.resolve() != used.resolve() and other.read_bytes() != used.read_bytes():
            _LOG.warning("%s: model_file: using %s (the current folder is looked in first); %s differs and is not "
                         "used (name the one you mean with its path)", settings_name, used.resolve(), other.resolve())
            return


def check_model_file(model_file: Path, settings_name: str) -> list[str]:
    """[] when `model_file` can be the model file (a .py file defining `model(usersettings)`, its name a served
    model's), else its one problem line."""
    problem = model_name_problem(model_file.stem)  # `Settings.model_name`: the rule every served model name meets
    if problem is not None:
        return [f"{settings_name}: model_file: {model_file.name!r} names the served model: {problem}"]
    if model_file.suffix != ".py":
        return [f"{settings_name}: model_file: expected a .py file, got {str(model_file)!r}"]
    if not model_file.is_file():  # (a run's copy removed: the user's own file is looked for before)
        return [f"{model_file}: model file not found"]
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
