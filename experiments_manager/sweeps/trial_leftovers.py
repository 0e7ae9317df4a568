"""What a trial leaves behind in a warm trial host (`trial_host.py`), let go before the next trial: the user's modules
it imported, Keras' session, the gradient functions TensorFlow registered while tracing its train step (process-wide,
never removed by TensorFlow: each holds its step's whole graph), and the freed heap given back to the system. With
these, the host's memory stays flat trial after trial (BENCHMARKS.md, `tools/bench_sweep.py --part memory`).

Example:

```python
modules, gradients = set(sys.modules), registered_gradients()
...  # a trial trains
let_go_of_trial(modules, keep_model=False, gradients_before=gradients)
```
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Any, Optional

from experiments_manager.utils.freed_memory import return_freed_memory

_CUSTOM_GRADIENT_PREFIX = "CustomGradient-"  # the names `tf.custom_gradient` registers its gradient functions under


def let_go_of_trial(modules_before: set[str], keep_model: bool, gradients_before: set[str]) -> None:
    """What one trial leaves behind, let go: the modules it imported from the user's files (the settings, the model
    file, their helpers), so that the next trial imports them afresh, and unless `keep_model`, Keras' session (its
    graphs, names, seeds: a kept model still uses them) and the gradient functions its tracing registered;
    installed packages it imported stay loaded (they are what a warm host saves)."""
    from experiments_manager.run.attempts import is_user_module_file
    from experiments_manager.settings.loader import MODEL_MODULE_PREFIX, SETTINGS_MODULE_PREFIX

    for name in set(sys.modules) - modules_before:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if (module is None or name.startswith((SETTINGS_MODULE_PREFIX, MODEL_MODULE_PREFIX))
                or (path and is_user_module_file(path))):
            sys.modules.pop(name, None)
    if keep_model:
        gc.collect()
    else:
        clear_session(gradients_before)


def clear_session(gradients_before: set[str]) -> None:
    """Keras' session cleared (the models it built let go, its names numbered afresh), the gradient functions
    registered since `gradients_before` unregistered, then the garbage collected.

    Each trace of a train step under a distribution strategy registers a custom gradient of its all-reduce in
    TensorFlow's process-wide gradient registry (`tf.custom_gradient` in graph mode), never removed: it holds the
    step's whole graph (3.7 MiB a trial for a small CNN, trial after trial). Once the trial's functions are traced,
    nothing looks them up again (a traced function holds its gradient ops), so the host drops them with the model.
    """
    import keras

    keras.backend.clear_session()
    registry = _gradient_registry()
    if registry is not None:
        for name in set(registry) - gradients_before:
            if name.startswith(_CUSTOM_GRADIENT_PREFIX):
                registry.pop(name, None)
    gc.collect()
    return_freed_memory()  # so the host's resident size says what it holds


def _gradient_registry() -> Optional[dict[str, Any]]:
    """TensorFlow's registry of gradient functions by op type (a private name: None where it is not there)."""
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


def registered_gradients() -> set[str]:
    """The names in TensorFlow's process-wide gradient registry now (empty where it cannot be read): taken before a
    trial, so that `clear_session` unregisters only what the trial's traces added."""
    registry = _gradient_registry()
    return set(registry) if registry is not None else set()


def resident_bytes() -> int:
    """This process' resident memory now (0 where /proc is not there)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")
