"""The settings module a researcher writes, loaded once and read as typed sections.

- `loader.py`: executes a settings file or reads a settings object built in Python; `Settings`, `load_settings`,
  `as_settings`, `settings_from_object`, `load_experiment_settings`.
- `overrides.py`: hparam overrides (`--hparam`), merged into a settings file in memory, never rewriting it; a name
  the file's hparams lack is refused with the closest key unless asked for as new (`+name`).
- `model_file.py`: where the settings' `model_file` is found (and a differing second candidate named), what it must be.
- `sections.py`: the sections (experiment, runtime, training, data, monitoring, export, serving, kafka, federated,
  sweep) as dataclasses: the one map from a settings file's names to the engine's, with defaults and docs.
- `contract.py`: the checks a value must pass, and TF Serving's default ports.
- `script.py`: a settings or model file run as `python FILE` would run it (also a run's copy, on resume).
- `spelling.py`: module-level names that look like a misspelt setting, warned of.

Keras 2-era spellings inside the user's code (tf.keras namespaces, metrics, data iterators) are `keras2/`'s.
"""

from experiments_manager.settings.loader import (Settings, as_settings, load_experiment_settings, load_settings,
                                                 settings_from_object)
from experiments_manager.settings.overrides import parse_hparam_overrides

__all__ = ["Settings", "as_settings", "load_experiment_settings", "load_settings", "parse_hparam_overrides",
           "settings_from_object"]
