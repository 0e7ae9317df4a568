"""Finding run folders below a folder (up to 4 levels), and reading a found run's record without failing on it.

Every tool that looks at many runs finds them here: `list`, `prune`, `serve FOLDER`, TensorBoard's tests. A folder
is a run when it holds run.json; a run's own folder is not looked into (its federated clients are its own), nor are
hidden folders and virtualenvs.

Example:

```python
from experiments_manager.run.discovery import find_experiments

for experiment in find_experiments("experiments"):
    print(experiment.root, experiment.run_info()["status"])
```
"""

import os
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from experiments_manager.run.experiment import RUN_FILE_NAME, Experiment
from experiments_manager.run.record import RunRecord
from experiments_manager.utils.environment_failures import EnvironmentFailure
from experiments_manager.utils.errors import UserInputError

# how far below a folder experiments are looked for: lab folder / working folder / sweep / experiment, one to spare
MAX_DEPTH = 4
_NOT_EXPERIMENTS = {"venv", "node_modules", "__pycache__", "site-packages"}


def walk_below(folder: "str | os.PathLike[str]") -> Iterator[Tuple[str, List[str], List[str]]]:
    """`os.walk` of `folder` as a listing looks: up to `MAX_DEPTH` levels, not inside experiment folders (their
    federated clients are theirs, their logs are many), nor hidden folders and virtualenvs.

    Args:
        folder: the folder to look below.

    Yields:
        (parent, its subfolders' names, its files' names), the subfolders named before the skipped ones are left
        out, so a caller sees an experiment folder's own entries.

    Raises:
        UserInputError: `folder` is no folder.

    Example:

    ```python
    runs = [parent for parent, _, files in walk_below("experiments") if "run.json" in files]
    ```
    """
    if not Path(folder).is_dir():
        raise UserInputError(f"{folder}: no such folder")
    top = len(Path(folder).parts)
    for parent, subfolders, files in os.walk(folder):
        yield parent, list(subfolders), files
        deep = len(Path(parent).parts) - top >= MAX_DEPTH
        if RUN_FILE_NAME in files or deep:
            subfolders[:] = []
        else:
            subfolders[:] = sorted(name for name in subfolders
                                   if not name.startswith(".") and name not in _NOT_EXPERIMENTS)


def folders_below(folder: "str | os.PathLike[str]", marker: str) -> List[Path]:
    """Folders up to `MAX_DEPTH` levels under `folder` holding the file `marker` (as `walk_below` looks)."""
    return [Path(parent) for parent, _, files in walk_below(folder) if marker in files]


def find_experiments(working_folder: "str | os.PathLike[str]") -> List[Experiment]:
    """Experiment folders up to `MAX_DEPTH` levels below `working_folder` (a sweep's trials included), oldest first."""
    found = [Experiment(folder) for folder in folders_below(working_folder, RUN_FILE_NAME)]
    return sorted(found, key=lambda experiment: str(read_run_info(experiment).get("started") or ""))


UNREADABLE = "unreadable run.json"  # the `reason` of `read_run_info`'s stand-in, which has no status


def read_run_info(experiment: Experiment) -> RunRecord:
    """run.json, or a stand-in without a status whose `reason` says it cannot be read (another tool's run.json, a
    damaged file): `shown_status` gives either as `list` shows it.

    Args:
        experiment: the run's `Experiment`.

    Example:

    ```python
    read_run_info(Experiment("experiments/broken"))  # {'reason': 'unreadable run.json (not JSON)'}
    ```
    """
    try:
        info: object = experiment.run_info()
    except EnvironmentFailure:
        return {"reason": f"{UNREADABLE} (storage error)"}
    except UserInputError as error:  # not JSON, or a key out of its type or rule (`Experiment.run_info`'s line)
        return {"reason": f"{UNREADABLE} ({_in_short(str(error).removeprefix(f'{experiment.run_file}: '))})"}
    except (OSError, ValueError):
        return {"reason": f"{UNREADABLE} (not JSON)"}
    return info  # type: ignore[return-value]  # a dict that run.json held


def _in_short(problem: str) -> str:
    """`Experiment.run_info`'s refusal as a status fits a table: 'not JSON', 'not an object', 'bad model_name', "a
    newer engine's record".

    Args:
        problem: the refusal's line without the file's name.
    """
    if problem.startswith("expected a JSON object:"):
        return "not JSON"
    if problem.startswith("expected a JSON object"):
        return "not an object"
    if problem.startswith("record_version:"):
        return "a newer engine's record"
    return f"bad {problem.split(':', 1)[0]}"


def shown_status(info: RunRecord) -> Optional[str]:
    """The run's status, or the stand-in's `unreadable run.json (...)` (`read_run_info`), or None."""
    reason = info.get("reason")
    if "status" not in info and isinstance(reason, str) and reason.startswith(UNREADABLE):
        return reason
    return info.get("status")
