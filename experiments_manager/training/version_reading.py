"""An exported version read whole into a model built to fit it: the one read `em.load`, `evaluate`, edge export and
`--init-from` share.

The version's files are checked against its manifest first; the layers the rebuilt model did not build (blocks only
its training step calls) are built as the version records (`export/build_configs.py`); then its weights (Keras'
weights file, or an earlier engine's checkpoint through its object graph), its checkpointed lookup tables and its
lookup layers' vocabularies are read into the model (`export.saved_state.restore_version`): every weight of the
model must be there with its shape.
A model of another architecture is `training/fine_tuning.py`'s case (its blocks matched by name).

Example:

```python
read_version(Path(run) / "exported_models" / "3", model, settings, where=f"{run} version 3: em.load")
```
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.settings.loader import Settings


def read_version(folder: Path, model: Any, settings: Settings, where: str) -> None:
    """Reads the version at `folder` into `model`, or says in one line why it cannot.

    Args:
        folder: the version's SavedModel folder.
        model: the built model (its served module is made from `settings` and traced here).
        settings: the model's `Settings`.
        where: what a message starts with (`<run> version 3: em.load`).

    Raises:
        UserInputError: the version's files are damaged or gone, or it does not fit the model (the first weight
            that differs named).
    """
    from experiments_manager.export.lookup_tables import VersionMismatch

    try:
        read_version_or_mismatch(folder, model, settings, where)
    except VersionMismatch as error:
        raise UserInputError(f"{where}: {error}") from None


def read_version_or_mismatch(folder: Path, model: Any, settings: Settings, where: str) -> None:
    """`read_version`, a version that does not fit the model raised as `export.lookup_tables.VersionMismatch` (a
    `keras_weights.WeightsDiffer` for weights: nothing assigned yet), for a caller that tries another way."""
    from experiments_manager.export.build_configs import build_as_recorded
    from experiments_manager.export.saved_state import restore_version
    from experiments_manager.export.served_module import served_module
    from experiments_manager.utils.checksums import verify_manifest

    problem = verify_manifest(folder) if folder.is_dir() else "its folder is gone"
    if problem is not None:
        raise UserInputError(f"{where}: expected a readable SavedModel version, got: {problem}")
    build_as_recorded(model, folder)  # the blocks only its training step built (a Sequential without Input)
    restore_version(folder, served_module(settings, model), model)
