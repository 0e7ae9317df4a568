"""A run's exported version as a Keras model: the run's own model rebuilt, the version's weights read into it.

The model is built from the run's copies of its settings and model file (with its recorded hparams), as training
built it; its served module (the settings' `get_served_module`, or the model's own call) is made and traced, as the
exporter made it; then the version is read into it (`training/version_reading.py`, the read `--init-from` makes
too): its Keras weights file by Keras' own `load_weights` (an earlier engine's version: its checkpoint through its
object graph), every weight of the model found there with its shape, so the model holds exactly the EMA weights the
version holds, and its predictions are the served version's answers. The caller's Keras dtype policy is left as it
was, whatever the settings file sets.

Example:

```python
model = load_version("experiments/examples/curve_fitting/my_test_2026-11-21--10-00-00")   # the best version
model.predict(x)
model.version_info     # {'run': '...', 'version': 3, 'epoch': 2, 'monitor': 'val_loss', 'value': 0.0123, ...}
```
"""

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from experiments_manager.run.experiment import Experiment
from experiments_manager.run.version_records import VersionRecord, chosen_version, describe, read_record_file

if TYPE_CHECKING:
    from experiments_manager.settings.loader import Settings

_LOG = logging.getLogger(__name__)


def load_version(run: Union[str, Path, Experiment], version: Optional[int] = None, settings: Any = None,
                 accept_code_change: bool = False) -> Any:
    """Version `version` (None: the best) of the run `run` as a Keras model holding that version's weights.

    Args:
        run: the experiment folder (or its `Experiment`).
        version: the version number (default None: the version holding the run's best epoch).
        settings: the run's `Settings` already loaded (the training process' own), or for a run whose settings were
            built in Python the same settings object again (default None: the run's own copies, loaded).
        accept_code_change: rebuild the model although a module of the run's code changed since its last attempt
            ran (default False: refused in one line naming the file and em.load's argument).

    Returns:
        the Keras model (not compiled, but for an earlier engine's version of a model with its own `train_step`
        built as its training built it: `version_reading.py`); its `version_info` says the run, the version and
        the epoch it holds, and its name ends with `_v<N>`.

    Raises:
        UserInputError: no such run, no such version, no export yet, the run's code changed since it trained, or a
            model that does not fit the version.

    Example:

    ```python
    model = load_version(outcome.experiment.root, version=2)
    ```
    """
    experiment = run if isinstance(run, Experiment) else Experiment.open(run)
    number, record, best = chosen_version(experiment, version)
    experiment.refuse_code_changes("em.load", accept_code_change, "em.load(..., accept_code_change=True)")
    return chosen_version_model(experiment, number, record, best, settings)


def chosen_version_model(experiment: Experiment, number: int, record: Optional[VersionRecord], best: bool,
                         settings: Any = None) -> Any:
    """`load_version` of a version chosen and its code checked by the caller (`evaluate` chooses it first).

    Args:
        experiment: the run.
        number, record, best: `run.version_records.chosen_version`'s answer.
        settings: as `load_version`'s.
    """
    from experiments_manager.settings import Settings, load_experiment_settings

    from experiments_manager.training.model import dtype_policy

    with dtype_policy(None):  # the caller's Keras policy is left as it is, whatever the settings file sets
        if not isinstance(settings, Settings):
            settings = load_experiment_settings(experiment, settings)
        folder = experiment.export_dir / str(number)
        model = _model_with_weights_of(settings, experiment, number)
    record = record or read_record_file(folder) or {}
    model.version_info = {"run": str(Path(experiment.root).resolve()), "version": number, "best": best,
                          **{key: record.get(key) for key in ("epoch", "monitor", "value")}}
    model.name = f"{model.name}_v{number}"
    _LOG.info("Loaded %s of %s", describe(number, record, best=best), experiment.root)
    return model


def version_model(experiment: Experiment, number: int, asker: str) -> Any:
    """Version `number` of `experiment` as the model its run built: its settings loaded from the run's copies, its
    layers named as a command-line training process named them (Keras' numbering afresh, given back after), the
    version read whole into it. What `--init-from` matches a model of another architecture with.

    Raises:
        UserInputError: the run's settings cannot be loaded, or the version does not fit the rebuilt model.
    """
    from experiments_manager.settings import load_experiment_settings
    from experiments_manager.training.model import dtype_policy, keras_names_kept

    with dtype_policy(None), keras_names_kept(fresh=True):
        settings = load_experiment_settings(experiment, None)
        return _model_with_weights_of(settings, experiment, number, asker)


def _model_with_weights_of(settings: "Settings", experiment: Experiment, number: int, asker: str = "em.load") -> Any:
    """The settings' model with version `number`'s values (`version_reading.rebuilt_with_version`)."""
    from experiments_manager.training.version_reading import rebuilt_with_version

    root = Path(experiment.root).resolve()
    return rebuilt_with_version(settings, experiment.export_dir / str(number), f"{root} version {number}: {asker}")[0]
