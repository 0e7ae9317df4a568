"""experiments_manager: train, export and track TensorFlow/Keras experiments from one settings file.

The public API is imported lazily so that `import experiments_manager` (and the
command line's `--help`) does not import TensorFlow.

Example:

```python
import experiments_manager as em

outcome = em.train("examples/regression/mysettings_curve_fitting.py", {"nbEpoch": 3})
em.resume(outcome.experiment.root)
```
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "load_settings": "experiments_manager.settings",
    "Settings": "experiments_manager.settings",
    "Experiment": "experiments_manager.experiment",
    "train": "experiments_manager.training",
    "resume": "experiments_manager.training",
    "Trainer": "experiments_manager.training",
    "Exporter": "experiments_manager.export",
    "UserInputError": "experiments_manager.errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'experiments_manager' has no attribute {name!r}")
