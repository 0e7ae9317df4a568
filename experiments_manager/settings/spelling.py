"""Module-level names of a settings file that look like a misspelt setting: one warning line each.

A setting that is not set takes its default, so `early_stoping_patience = 1` or `monitored_loss = 'val_accuracy'`
would train silently with the defaults (patience 10, `val_loss`). A module-level name that the engine does not
read and that is close to the name of a setting the module does not set is named in one line with the closest one. Names
of the original framework that the engine does not read stay accepted without a word, as do the module's own
helpers (functions, classes, modules and names far from every setting).

Example:

```python
warn_of_misspelt_names(module, "mysettings.py")
# WARNING mysettings.py: early_stoping_patience: not a setting (ignored); did you mean early_stopping_patience?
```
"""

from __future__ import annotations

import difflib
import inspect
import logging
import types
from typing import Any

from experiments_manager.settings.sections import NAMES, fields

_LOG = logging.getLogger("experiments_manager.settings")

# names the original framework's settings files set that this engine does not read: never a misspelling
ORIGINAL_FRAMEWORK_NAMES = frozenset({
    "served_input_names", "served_head_names", "raw_data_filename_extension", "wait_for_server_ready_int_secs",
    "serve_on_gpu", "debug",
})
# settings that are functions or classes: their documentation starts with their call (`get_optimizer(...)`)
_CALLABLE = sorted({name for _, field, name in fields()
                    if field.metadata["doc"].startswith((f"`{name}(", "class `"))})
_VALUES = sorted(NAMES - set(_CALLABLE))


def _folded(name: str) -> str:
    """A name without case and underscores: `NBEPOCH`, `EarlyStoppingPatience` fold to settings' names."""
    return name.lower().replace("_", "")


# (the names a value is compared with, the same by their folded spelling), for a callable and for any other value
_KINDS = {callable_: (kind, {_folded(name): name for name in kind})
          for callable_, kind in ((True, _CALLABLE), (False, _VALUES))}
_CUTOFF = 0.8  # difflib's ratio: `monitored_loss` ~ `monitored_loss_name` 0.85, `nb_classes` ~ `nbEpoch` 0.47


def misspelt_names(module: types.ModuleType) -> list[tuple[str, str]]:
    """(name, the closest setting's name) for each module-level name that looks like a misspelt setting.

    A function or class is compared with the settings that are functions or classes (`get_optimizer`,
    `Client_IO`), any other value with the others (a module-level `optimizer = Adam()` is no `get_optimizer`). A
    name whose closest setting the module sets too is the module's own (`raw_data_dir` beside `raw_data_dir_val`).
    """
    found = []
    names = vars(module)
    for name, value in names.items():
        if name.startswith("_") or name in NAMES or name in ORIGINAL_FRAMEWORK_NAMES or inspect.ismodule(value):
            continue  # `import numpy as np`
        candidates, folded = _KINDS[callable(value)]
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=_CUTOFF)
        if not close and _folded(name) in folded:  # the same name in another case
            close = [folded[_folded(name)]]
        if close and close[0] not in names:
            found.append((name, close[0]))
    return found


def closest_hparam(name: str, hparams: "list[str] | dict[Any, Any]") -> "str | None":
    """The hparam `name` was likely meant as: the closest key by spelling (`embed_dimm` -> `embed_dim`), else one it
    abbreviates (`lr` -> `learningRate`); None when none is close.

    Example:

    ```python
    closest_hparam("lr", {"learningRate": 0.01, "units": 8})    # 'learningRate'
    ```
    """
    keys = [str(key) for key in hparams]
    close = difflib.get_close_matches(name, keys, n=1, cutoff=0.5) or [key for key in keys if _abbreviates(name, key)]
    return close[0] if close else None


def _abbreviates(short: str, name: str) -> bool:
    """True when `short`'s letters appear in order in `name`, from its first letter ('lr', 'learningRate')."""
    short, name = short.lower(), name.lower()
    if not short or not name.startswith(short[0]):
        return False
    letters = iter(name)
    return all(letter in letters for letter in short)


def warn_of_misspelt_names(module: types.ModuleType, file_name: str) -> None:
    """Logs one warning line per name of `misspelt_names`, naming the file."""
    for name, close in misspelt_names(module):
        _LOG.warning("%s: %s: not a setting (ignored); did you mean %s?", file_name, name, close)
