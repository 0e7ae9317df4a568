"""experiments_manager: train, export and track TensorFlow/Keras experiments from one settings file.

The public API is imported lazily so that `import experiments_manager` (and the
command line's `--help`) does not import TensorFlow.

Example:

```python
import experiments_manager as em

outcome = em.train("examples/regression/mysettings_curve_fitting.py", {"nbEpoch": 3})
em.resume(outcome.experiment.root)
server = em.serve(outcome.experiment.root)   # in this process, until server.stop()
```

`em.load(run)` gives a run's best exported version as a Keras model, `em.evaluate(run)` evaluates it on the test
set. `em.sweep(settings_file, max_evals)` runs a hyperopt sweep. Settings may also be a module, class or object built
in Python (see `experiments_manager.runs.api`).
"""

import importlib

from experiments_manager.utils.deferred_imports import defer_optional_imports

defer_optional_imports()  # before TensorFlow: Keras's scikit-learn wrappers and pyplot run when first used

__version__ = "0.1.0"

_PUBLIC = {
    "train": "experiments_manager.runs.api",
    "resume": "experiments_manager.runs.api",
    "sweep": "experiments_manager.runs.api",
    "resume_sweep": "experiments_manager.runs.api",
    "serve": "experiments_manager.runs.api",
    "load": "experiments_manager.runs.api",
    "evaluate": "experiments_manager.runs.api",
    "show_logs": "experiments_manager.runs.api",
    "load_settings": "experiments_manager.settings",
    "Settings": "experiments_manager.settings",
    "Experiment": "experiments_manager.run.experiment",
    "find_experiments": "experiments_manager.run.discovery",
    "list_runs": "experiments_manager.runs.listing",
    "TrainingOutcome": "experiments_manager.training",
    "Trainer": "experiments_manager.training",
    "Exporter": "experiments_manager.export",
    "UserInputError": "experiments_manager.utils.errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> object:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'experiments_manager' has no attribute {name!r}")


def __dir__() -> list[str]:  # tab completion shows the public names before they are imported
    return sorted(set(globals()) | set(_PUBLIC))
