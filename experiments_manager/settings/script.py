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
source = ScriptSource.of(copy=run / "experiment_settings.py", original="/home/me/proj/settings.py")
source.runs, source.script      # the copy is executed; __file__ is /home/me/proj/settings.py
make_importable(source.script.parent)
```
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Optional, Union

from experiments_manager.utils.atomic import copy_atomically
from experiments_manager.utils.checksums import file_digest
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
    def of(cls, copy: Union[str, Path], original: Optional[Union[str, Path]]) -> "ScriptSource":
        """The copy executed as the `original` file: `__file__` is the original when it is still there (else the
        copy: the run moved to another machine, say)."""
        copy = Path(copy)
        there = original is not None and Path(original).is_file()
        return cls(runs=copy, script=Path(original) if there else copy)

    @property
    def changed(self) -> bool:
        """True when the user's file is not what the copy holds (edited since the run started)."""
        return self.script != self.runs and _digest(self.script) != _digest(self.runs)


def make_importable(folder: Path) -> None:
    """Puts `folder` first on `sys.path`, as Python does for a script's folder (once: a folder already there
    stays where it is)."""
    folder = str(Path(folder).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)


def replace_copy(copy: Path, original: Optional[str], run: Path) -> Optional[str]:
    """Puts the user's `original` file in place of the run's `copy` (durably) when they differ: a resume with
    `--settings-source original`.

    Args:
        copy: the run's copy (`experiment_settings.py`, the model file's copy).
        original: the user's file, as run.json recorded it (`settings_file`, `model_file`).
        run: the experiment folder, for the error message.

    Returns:
        'experiment_settings.py (replaced by /home/me/proj/settings.py)', as code changes are named, or None when
        the files are the same.

    Raises:
        UserInputError: the user's file is not (or no longer) there.
    """
    if not original or not Path(original).is_file():
        raise UserInputError(f"{run}: --settings-source original: {original or 'the original of ' + copy.name} is "
                             "not a file (not recorded, or gone); resume with the run's copy (--settings-source copy)")
    if _digest(Path(original)) == _digest(copy):
        return None
    copy_atomically(Path(original), copy)
    return f"{copy.name} (replaced by {original})"


def _digest(path: Path) -> Optional[str]:
    try:
        return file_digest(path)["sha256"]
    except OSError:
        return None
