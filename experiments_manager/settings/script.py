"""Settings and model files run as the Python scripts they are: as `python FILE` would run them.

`python settings.py` puts the file's own folder first on `sys.path` (so `from helpers import load` finds the
`helpers.py` beside it) and sets `__file__` to the file (so `os.path.dirname(__file__)` locates its data). A run
keeps copies of its settings and model files, and a resume executes those copies: the code that ran. Their
`__file__` is still the user's file, and its folder importable, so a resume finds the same data and helpers as the
first run did. When the user's file has changed since, one line says so and names the file that runs; the user
chooses the edited one with `train --resume RUN --settings-source original`.

This module does not import TensorFlow.

Example:

```python
source = ScriptSource.of(run / "experiment_settings.py", "/home/me/proj/settings.py")
source.runs, source.script      # the copy is executed; __file__ is /home/me/proj/settings.py
make_importable(source.script.parent)
```
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Optional, Union

from experiments_manager.run.attempts import file_sha256
from experiments_manager.utils.atomic import copy_atomically
from experiments_manager.utils.errors import UserInputError

SETTINGS_SOURCES = ("copy", "original")  # what a resume executes: the run's copy (default) or the user's file


@dataclasses.dataclass(frozen=True)
class ScriptSource:
    """A file to execute and the path its code sees as `__file__`.

    Args:
        runs: the file whose code is executed (a run's copy on resume).
        script: the user's file: `__file__`, and the folder made importable (default: `runs`).
    """

    runs: Path
    script: Path

    @classmethod
    def of(cls, copy: Union[str, Path], original: Optional[Union[str, Path]], use_original: bool = False,
           run: Optional[Path] = None) -> "ScriptSource":
        """The run's `copy`, executed as the user's `original` file; or, with `use_original`, the original itself.

        The copy's `__file__` is the original's path while the original's folder is there, even when the file was
        renamed or removed since (its data and helpers beside it are still found); else the copy's own.

        Raises:
            UserInputError: `use_original`, and the original is not (or no longer) a file (`run` names the run).
        """
        copy = Path(copy)
        if original is None:
            return cls(runs=copy, script=copy)
        original = Path(original)
        if use_original:
            if not original.is_file():
                raise UserInputError(f"{run}: --settings-source original: {original} is not a file (gone); resume "
                                     "with the run's copy (--settings-source copy)")
            return cls(runs=original, script=original)
        return cls(runs=copy, script=original if original.parent.is_dir() else copy)

    @property
    def gone(self) -> bool:
        """True when the copy runs as a user's file that is no longer there."""
        return self.script != self.runs and not self.script.is_file()

    @property
    def changed(self) -> bool:
        """True when the user's file is there and is not what the copy holds (edited since the run started)."""
        return self.script != self.runs and self.script.is_file() and file_sha256(self.script) != file_sha256(self.runs)


def make_importable(folder: Path) -> None:
    """Puts `folder` first on `sys.path`, as Python does for a script's folder (once: a folder already there
    stays where it is)."""
    path = str(Path(folder).resolve())
    if path not in sys.path:
        sys.path.insert(0, path)


def replace_copy(copy: Path, original: Path) -> Optional[str]:
    """Puts the user's `original` file in place of the run's `copy` (durably) when they differ: a resume with
    `--settings-source original`, once the original has loaded and passed its checks.

    Returns:
        'experiment_settings.py (replaced by /home/me/proj/settings.py)', as code changes are named, or None when
        the files are the same (or `original` is the copy: an older run recorded no model file).
    """
    if Path(original) == Path(copy) or file_sha256(original) == file_sha256(copy):
        return None
    copy_atomically(Path(original), Path(copy))
    return f"{Path(copy).name} (replaced by {original})"


def existing_settings_file(path: Union[str, Path]) -> Path:
    """`path` as a `Path`, or one line saying the settings file is not there: what commands check before they import
    TensorFlow, so a mistyped name is said at once.

    Args:
        path: the settings file given (`-u`).

    Raises:
        UserInputError: no such file.

    Example:

    ```python
    existing_settings_file("examples/regression/mysettings_curve_fitting.py")
    ```
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: settings file not found")
    return path
