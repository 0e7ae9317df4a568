"""An exported version read whole into a model built to fit it: the one read `em.load`, `evaluate`, edge export and
`--init-from` share.

The version's files are checked against its manifest first; the layers the rebuilt model did not build (blocks only
its training step calls) are built as the version records (`export/build_configs.py`); then its weights (Keras'
weights file, or an earlier engine's checkpoint through its object graph), its checkpointed lookup tables and its
lookup layers' vocabularies are read into the model (`export.saved_state.restore_version`): every weight of the
model must be there with its shape. A version written before versions recorded their build configs, of a model
with its own `train_step`, whose weights do not fit the rebuilt model, is read again after the model is built as
its training built it: compiled as training compiles it, its step traced (not run) on the training data's spec
(`compiled_model.built_as_fit_builds`); a model built so is left compiled.
A model of another architecture is `training/fine_tuning.py`'s case (its blocks matched by name).

Example:

```python
model, module = rebuilt_with_version(settings, Path(run) / "exported_models" / "3", f"{run} version 3: em.load")
read_version(Path(run) / "exported_models" / "3", model, settings, where=f"{run} version 3: --init-from")
```
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.settings.loader import Settings


def rebuilt_with_version(settings: Settings, folder: Path, where: str, float32: bool = False) -> tuple[Any, Any]:
    """The settings' model built, its served module made and traced as the exporter made them, the version at
    `folder` read into it: what `em.load`, `evaluate`, `--init-from`'s source and edge export's float32 copy read a
    version into.

    Args:
        settings: the run's `Settings`.
        folder: the version's SavedModel folder.
        where: what a message starts with (`<run> version 3: em.load`).
        float32: build in float32 whatever the settings' precision (default False: as the settings train it).

    Returns:
        (the model, its served module).

    Raises:
        UserInputError: as `read_version`.
    """
    from experiments_manager.export.served_module import served_module
    from experiments_manager.training.model import build_model, dtype_policy, precision_policy
    from experiments_manager.utils.own_train_step import mark_built_when_its_layers_are

    with dtype_policy("float32") if float32 else precision_policy(settings.runtime.mixed_precision):
        model = build_model(settings)
        module = served_module(settings, model)
        with warnings.catch_warnings():  # Keras' word on a subclassed model built by its call, said at training
            warnings.filterwarnings("ignore", message=r"`build\(\)` was called on layer")
            module.served_model.get_concrete_function()  # the variables a model without Input makes when called
        mark_built_when_its_layers_are(model)  # a model whose served function calls its parts (a GAN's generator)
    read_version(folder, model, settings, where, module)
    return model, module


def read_version(folder: Path, model: Any, settings: Settings, where: str, module: Any = None) -> None:
    """Reads the version at `folder` into `model`, or says in one line why it cannot.

    Args:
        folder: the version's SavedModel folder.
        model: the built model.
        settings: the model's `Settings`.
        where: what a message starts with (`<run> version 3: em.load`).
        module: the model's served module, made already (default None: made here).

    Raises:
        UserInputError: the version's files are damaged or gone, or it does not fit the model (the first weight
            that differs named).
    """
    from experiments_manager.export.lookup_tables import VersionMismatch

    try:
        read_version_or_mismatch(folder, model, settings, where, module)
    except VersionMismatch as error:
        raise UserInputError(f"{where}: {error}") from None


def read_version_or_mismatch(folder: Path, model: Any, settings: Settings, where: str, module: Any = None) -> None:
    """`read_version`, a version that does not fit the model raised as `export.lookup_tables.VersionMismatch` (a
    `keras_weights.WeightsDiffer` for weights: nothing assigned yet), for a caller that tries another way."""
    from experiments_manager.export.build_configs import build_as_recorded
    from experiments_manager.export.keras_weights import WeightsDiffer
    from experiments_manager.export.saved_state import restore_version
    from experiments_manager.export.served_module import served_module
    from experiments_manager.utils.checksums import verify_manifest

    problem = verify_manifest(folder) if folder.is_dir() else "its folder is gone"
    if problem is not None:
        raise UserInputError(f"{where}: expected a readable SavedModel version, got: {problem}")
    recorded = build_as_recorded(model, folder)  # the blocks only its training step built (a Sequential without Input)
    module = served_module(settings, model) if module is None else module
    try:
        restore_version(folder, module, model)
    except WeightsDiffer as differ:
        if recorded is not None or not _unbuilt_by_its_own_step(model):
            raise
        failed = _build_as_its_training_built_it(model, settings, folder.parent.parent)
        if failed is not None:
            raise WeightsDiffer(f"{differ}; building it as its training did failed: {failed}") from None
        restore_version(folder, module, model)


def _unbuilt_by_its_own_step(model: Any) -> bool:
    """True for a model with its own `train_step` that left layers unbuilt (what only its step calls)."""
    from experiments_manager.export.build_configs import layer_places
    from experiments_manager.utils.own_train_step import has_own_train_step

    return has_own_train_step(model) and not all(layer.built for _, layer in layer_places(model))


def _build_as_its_training_built_it(model: Any, settings: Settings, run_folder: Path) -> "str | None":
    """Builds the layers of a model with its own `train_step` that are still unbuilt as its training built them
    (its step traced on the training data's spec, the model compiled as training compiles it).

    Returns:
        None once done, else why it failed, in one phrase (the training pipeline or the trace raised).
    """
    from experiments_manager.settings.pipeline import settings_pipeline
    from experiments_manager.training.compiled_model import compile_as_training_compiles

    try:
        with warnings.catch_warnings():  # Keras' word on the user's model, said when it trained
            warnings.simplefilter("ignore")
            compile_as_training_compiles(settings, model,
                                         settings_pipeline(settings, True, run_folder=run_folder).dataset)
    except Exception as error:  # noqa: BLE001 - said after the weights the model lacks
        if isinstance(error, UserInputError):  # the settings' pipeline, said in its one line
            return str(error)
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return None
