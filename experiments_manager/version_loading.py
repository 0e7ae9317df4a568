"""A run's exported version as a Keras model: the run's own model rebuilt, the version's weights read into it.

The model is built from the run's copies of its settings and model file (with its recorded hparams), as training
built it; its served module (the settings' `get_served_module`, or the model's own call) is made and traced, as the
exporter made it; then the version's SavedModel checkpoint (`exported_models/<N>/variables/`) is read into that
module by TensorFlow's object-based restore, the way `tf.saved_model.load` matches it. Every variable of the model
must be found there: the model then holds exactly the EMA weights the version holds, and its predictions are the
served version's answers.

Example:

```python
model = load_version("experiments/examples/curve_fitting/my_test_2026-11-21--10-00-00")   # the best version
model.predict(x)
model.version_info     # {'run': '...', 'version': 3, 'epoch': 2, 'monitor': 'val_loss', 'value': 0.0123, ...}
```
"""

import logging
from pathlib import Path
from typing import Optional

from experiments_manager.experiment import Experiment
from experiments_manager.export_template import VARIABLES_PREFIX
from experiments_manager.utils.errors import UserInputError
from experiments_manager.version_records import (best_version, describe, present_versions, read_record_file,
                                                 records_of)

_LOG = logging.getLogger(__name__)


def chosen_version(experiment, version: Optional[int] = None, option: str = "version") -> tuple:
    """(version, its record or None, whether it is the best): `version`, or the run's best when None.

    Args:
        experiment: the `Experiment`.
        version: a version number, or None for the run's best (see `version_records.best_version`).
        option: how the caller names the version in a message (default 'version'; the command line: '--version').

    Raises:
        UserInputError: the run has no version yet (its status said), or not that one (those it has said).
    """
    info = experiment.run_info()
    present = present_versions(experiment.export_dir)
    if not present:
        raise UserInputError(f"{experiment.root}: no exported version yet (the run is {info.get('status')}, "
                             f"{info.get('epochs_completed') or 0} epochs done)")
    if version is None:
        chosen, record = best_version(info, present)
        return chosen, record, True
    if version not in present:
        raise UserInputError(f"{experiment.root}: {option}: expected one of the exported versions "
                             f"{', '.join(map(str, present))}, got {version}")
    best, _ = best_version(info, present)
    return version, records_of(info).get(version), version == best


def load_version(run, version: Optional[int] = None, settings=None):
    """Version `version` (None: the best) of the run `run` as a Keras model holding that version's weights.

    Args:
        run: the experiment folder (or its `Experiment`).
        version: the version number (default None: the version holding the run's best epoch).
        settings: the run's `Settings` already loaded (the training process' own), or for a run whose settings were
            built in Python the same settings object again (default None: the run's own copies, loaded).

    Returns:
        the Keras model (not compiled); its `version_info` says the run, the version and the epoch it holds,
        and its name ends with `_v<N>`.

    Raises:
        UserInputError: no such run, no such version, no export yet, or a model that does not fit the version.

    Example:

    ```python
    model = load_version(outcome.experiment.root, version=2)
    ```
    """
    from experiments_manager.settings import Settings, load_experiment_settings

    experiment = run if isinstance(run, Experiment) else Experiment.open(run)
    number, record, best = chosen_version(experiment, version)
    if not isinstance(settings, Settings):
        settings = load_experiment_settings(experiment, settings)
    folder = experiment.export_dir / str(number)
    model = _model_with_weights_of(settings, folder, f"{experiment.root}: version {number}")
    record = record or read_record_file(folder) or {}
    model.version_info = {"run": str(Path(experiment.root).resolve()), "version": number, "best": best,
                          **{key: record.get(key) for key in ("epoch", "monitor", "value")}}
    model.name = f"{model.name}_v{number}"
    _LOG.info("Loaded %s of %s", describe(number, record, best=best), experiment.root)
    return model


def _model_with_weights_of(settings, folder, what):
    """The settings' model, built and traced as the exporter does, with the SavedModel `folder`'s values."""
    import tensorflow as tf

    from experiments_manager.served_module import served_module
    from experiments_manager.training.model import build_model, precision_policy

    with precision_policy(settings.runtime.mixed_precision):
        model = build_model(settings)
        module = served_module(settings, model)
        module.served_model.get_concrete_function()  # creates the variables a subclassed model makes when called
    status = tf.train.Checkpoint(root=module).read(str(Path(folder) / VARIABLES_PREFIX))
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        raise UserInputError(f"{what}: the model the run's settings build does not match the version's variables "
                             f"({str(error).splitlines()[0][:300]})") from None
    # each object the module reaches was read; every weight of the model must be one of them
    reached = {id(trackable) for trackable in tf.train.TrackableView(module).descendants()}
    missing = [variable.path for variable in model.variables if id(variable) not in reached]
    if missing:
        raise UserInputError(f"{what}: the version does not hold the model's weights {', '.join(missing[:5])} "
                             "(its served module does not reach them)")
    return model
