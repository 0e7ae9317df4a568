"""Every module or file a docstring names exists: a file renamed or removed leaves no pointer to it behind.

Two kinds of reference are checked, in the package's docstrings and the tests':
- a file name ending in `.py` (found in the repository, the package or one of its packages, tests/ or tools/);
- a module named in backticks before an attribute, `log.console_copied` or `run.log.console_copied`, whose name has
  an underscore (the names a reader cannot tell from a variable): one of our modules, or an importable package (a
  file name, `mlflow_sent.json`, is not a module).
The names of files a user writes (a settings file, a model file), used in examples, are listed below.
"""

import ast
import importlib.util
import re

import pytest

from conftest import REPO

PACKAGE = REPO / "experiments_manager"
SOURCES = sorted(path for path in [*PACKAGE.rglob("*.py"), *(REPO / "tests").rglob("test_*.py"),
                                   *(REPO / "tools").rglob("*.py")]
                 if "__pycache__" not in path.parts and "data" not in path.relative_to(REPO).parts[1:2])
USERS_FILES = {  # the user's files in examples, not ours
    "settings.py", "s.py", "mysettings.py", "experiment_settings.py", "sweep_settings.py", "helpers.py",
    "em_federation.py", "exp/experiment_settings.py", "exp/model.py", "project/model.py", "project/settings.py",
    "model_curve_fitting.py", "_test.py", "tests/file.py",
}
NOT_MODULES = {  # named in backticks before a dot, and not a module: folders, files, objects
    "saved_model", "tf_loader", "em_federation", "confusion_matrix", "per_class", "experiment_settings",
    "loss_vs_hparams", "sweep_array", "sweep_settings",
}
FILE = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.py)\b")
DOTTED = re.compile(r"`((?:[a-z][a-z0-9]*\.)?[a-z][a-z0-9]*_[a-z0-9_]+)\.([A-Za-z_]\w*)")
FILE_EXTENSIONS = {"json", "jsonl", "csv", "png", "log", "h5", "npz", "db", "txt", "pb", "config", "sbatch", "def"}
OUR_MODULES = {path.stem for path in PACKAGE.rglob("*.py")}


def _docstrings(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield ast.get_docstring(node) or ""


def _file_exists(name, near):
    places = [REPO, PACKAGE, near.parent, REPO / "tests", REPO / "tools", REPO / "tests/e2e", REPO / "tests/unit",
              *(folder for folder in PACKAGE.iterdir() if folder.is_dir())]
    return any((place / name).exists() for place in places)


def _module_exists(dotted):
    *package, name = dotted.split(".")
    if package:  # one of our packages' modules (another library's, `tf.saved_model`, is not checked)
        return not (PACKAGE / package[0]).is_dir() or (PACKAGE / package[0] / f"{name}.py").is_file()
    if name in OUR_MODULES:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@pytest.mark.claim("every module or file a docstring names exists (tests/unit/test_docstring_references.py)")
def test_every_file_and_module_a_docstring_names_exists():
    missing = []
    for path in SOURCES:
        for doc in _docstrings(path):
            missing += [f"{path.relative_to(REPO)}: {name}" for name in FILE.findall(doc)
                        if name not in USERS_FILES and not _file_exists(name, path)]
            missing += [f"{path.relative_to(REPO)}: `{name}.`" for name, attribute in DOTTED.findall(doc)
                        if attribute not in FILE_EXTENSIONS and name not in NOT_MODULES and not _module_exists(name)]
    assert not missing, "\n".join(sorted(set(missing)))


def test_the_check_finds_a_missing_file_and_a_missing_module():
    assert not _file_exists("run_record.py", PACKAGE / "run/experiment.py")  # (renamed record.py)
    assert _file_exists("record.py", PACKAGE / "run/experiment.py")
    assert not _module_exists("run_log") and _module_exists("run.log") and not _module_exists("run.run_log")
