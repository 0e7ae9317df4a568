"""A new run made ready before its folder exists: devices, strategy, seed, inputs, and the model it trains, checked.

The dry build used to build a model of its own to check the settings (one line per problem, no folder left behind),
then training built the model again, traced it again and saved its served module again for the first version.
`prepare_run` builds the model once, where and as training builds it (seeded, the inputs made first, under the
strategy's scope and the precision policy), runs the dry build's checks on it (`dry_build.checked_training_model`),
and keeps the check's SavedModel as the template of the run's versions: the first version is then written from it
like every later one, in the background. What the checks prove is unchanged; a problem is still one line per
problem before anything is written.

A run it cannot prepare (a Kafka input, whose data needs the run's folder; a model with its own `train_step`,
which the check runs once: it would train the model that trains) is checked by `dry_build` on a model of its own,
and built by the trainer, as before. Resumes restore a checkpoint into the trainer's model.

Example:

```python
prepared = prepare_run(settings)                    # None: check with dry_build, build in the trainer
Trainer(experiment, settings, prepared=prepared).run()
```
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from experiments_manager.settings.loader import Settings
    from experiments_manager.training.built_model import BuiltModel
    from experiments_manager.training.fine_tuning import InitialWeights
    from experiments_manager.training.inputs import InputObject


@dataclasses.dataclass
class PreparedRun:
    """What `prepare_run` made, for the `Trainer` of the new run (`Trainer(prepared=...)`).

    Attributes:
        devices: the devices training uses (`select_devices`).
        strategy: the distribution strategy, made for them.
        seed: the run's seed (the settings' `random_seed`, else drawn), set before the inputs and the model.
        inputs: the run's input object.
        checked: the model, compiled for training and checked, with its served module and versions' template.

    Example:

    ```python
    prepared = prepare_run(settings)      # before the run's folder exists; None: the trainer builds the model
    Trainer(experiment, settings, prepared=prepared).run()
    ```
    """

    devices: list[str]
    strategy: Any
    seed: int
    inputs: InputObject
    checked: BuiltModel


def prepare_run(settings: Settings, initial_weights: Optional[InitialWeights] = None) -> Optional[PreparedRun]:
    """Devices, strategy, seed, inputs and the checked model of a new run on this host, or None when it cannot be
    prepared (then `dry_build` checks the settings, and the trainer builds the model).

    Args:
        settings: the loaded `Settings`.
        initial_weights: a fine-tuned run's `InitialWeights` (default None), loaded into the model.

    Raises:
        UserInputError: one line per problem of the settings (nothing is written).
    """
    from experiments_manager.distribute.devices import make_strategy, select_devices
    from experiments_manager.training.dry_build import OwnTrainStep, checked_training_model
    from experiments_manager.training.inputs import SettingsInput
    from experiments_manager.training.model import keras_names_kept, precision_policy
    from experiments_manager.training.run_seed import run_seed, set_run_seed

    if settings.kafka.enabled:  # its data comes from topics the run's folder names
        return None
    devices = select_devices(settings.runtime.gpu_ids, settings.path.name)
    strategy = make_strategy(settings.runtime.distribution_strategy, devices, settings.path.name)
    seed = run_seed(settings.runtime.random_seed)
    set_run_seed(seed, settings.runtime.deterministic)  # then the inputs, then the model
    with contextlib.ExitStack() as names_given_back:
        names_given_back.enter_context(keras_names_kept())  # the numbering given back unless the model is kept
        with precision_policy(settings.runtime.mixed_precision):
            try:
                inputs = SettingsInput(settings, None, seed)
            except Exception:  # noqa: BLE001 - the user's pipeline: the dry build says it, with every other
                return None    # problem, one line each
            try:
                with strategy.scope():
                    checked = checked_training_model(settings, inputs.train, initial_weights)
            except OwnTrainStep:
                inputs.close()
                return None
            except BaseException:
                inputs.close()
                raise
        names_given_back.pop_all()  # kept: its layers' names stay taken
    return PreparedRun(devices, strategy, seed, inputs, checked)
