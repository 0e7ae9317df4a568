"""Modules that Keras and hyperopt import at start-up for optional features, run when first used instead.

`import tensorflow` imports Keras, and Keras imports scikit-learn (for `keras.wrappers`, its scikit-learn
estimators) and `matplotlib.pyplot` (for `keras.visualization`'s image galleries) whenever they are installed, which
the `[research]` extra and our own matplotlib dependency make the case: 3 of the 10.7 CPU-s of `import tensorflow`
(`tools/bench_startup.py`, BENCHMARKS.md). A settings file's `from hyperopt import hp` (the seeds' way to declare
`hyperopt_space`) runs hyperopt's ATPE algorithm (which imports scipy.stats) and networkx (pyll's graphs, used when a
space is sampled): 1.2 of the 1.8 CPU-s that import took in every training process. Neither library has a setting for
it, so `defer_optional_imports()` registers an import hook that loads these modules lazily, as
`importlib.util.LazyLoader` does: `import sklearn`-style statements bind the module at once, and its code runs on the
first attribute anybody reads (`keras.wrappers.SKLearnClassifier`, `plt.plot`, `nx.DiGraph` when a sweep samples),
which then behaves as before. Unlike the standard library's lazy module:
- reading a deferred module's own metadata (`__name__`, `__file__`, `__spec__`, `__loader__`, `__package__`,
  `__cached__`) does not run it: TensorFlow's autograph reads `__file__` of every loaded module when it first
  converts a function, and the import system reads `__spec__` when a module is imported again, which with
  `LazyLoader` alone ran them in every process that trains (`train`, trials, workers);
- one thread runs the module while the others that read it wait (Python 3.11's lets them see it half-run).

The package's `__init__` calls it, so a process that imports `experiments_manager` before TensorFlow (every command,
trial and worker we start, and a notebook that imports us first) starts without them. It changes nothing for a
module already imported, and a module that cannot be loaded lazily (no `exec_module`) is imported as usual.

Example:

```python
from experiments_manager.utils.deferred_imports import defer_optional_imports

defer_optional_imports()
import tensorflow  # scikit-learn and matplotlib.pyplot are not run yet
```
"""

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

# The modules Keras imports only for optional features (keras/__init__.py and keras/_tf_keras/keras/__init__.py
# import `keras.wrappers`; keras/src/visualization/*.py import `matplotlib.pyplot`), and those hyperopt/__init__.py
# imports for sampling and for its ATPE algorithm only (`hyperopt.atpe`; networkx through `hyperopt.pyll.base`).
DEFERRED = frozenset({"keras.wrappers", "keras._tf_keras.keras.wrappers", "matplotlib.pyplot",
                      "hyperopt.atpe", "networkx"})

# A deferred module's own attributes, read without running it (a name lookup in its dict, as the import system set it)
METADATA = frozenset({"__name__", "__file__", "__spec__", "__loader__", "__package__", "__cached__"})


class _DeferredModule(ModuleType):
    """A module not run yet: the first read of an attribute other than `METADATA` runs it (one thread runs it, the
    others wait) and makes it a plain module."""

    def __getattribute__(self, attr: str) -> Any:
        if attr in METADATA:
            return object.__getattribute__(self, attr)
        spec = object.__getattribute__(self, "__spec__")
        state = spec.loader_state
        with state["lock"]:
            if type(self) is _DeferredModule and not state["running"]:  # not a read by its own code as it runs
                state["running"] = True
                try:
                    _run(self, spec, state["__dict__"])
                finally:
                    state["running"] = False
                    object.__setattr__(self, "__class__", ModuleType)
        return ModuleType.__getattribute__(self, attr)

    def __delattr__(self, attr: str) -> None:
        self.__getattribute__(attr)  # runs it (and raises as usual for an attribute it lacks)
        ModuleType.__delattr__(self, attr)


def _run(module: ModuleType, spec: importlib.machinery.ModuleSpec, dict_then: dict[str, Any]) -> None:
    """Runs the module's code; attributes set on it before (a submodule imported meanwhile) are kept, as when a
    module is run at import."""
    dict_now = object.__getattribute__(module, "__dict__")
    set_meanwhile = {key: value for key, value in dict_now.items()
                     if key not in dict_then or value is not dict_then[key]}
    assert spec.loader is not None  # the loader `_DeferredLoader` wrapped, as `exec_module` set it
    spec.loader.exec_module(module)
    dict_now.update(set_meanwhile)


class _DeferredLoader(importlib.abc.Loader):
    """Wraps a module's loader: the module is created as usual and run on its first read (`_DeferredModule`).

    Args:
        loader: the loader the path finder found (with `exec_module`).
    """

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        if type(module) is not ModuleType:  # made by its loader (an extension module): run at once
            self.loader.exec_module(module)
            return
        spec = module.__spec__
        if spec is None:  # not made by the import system: run at once
            self.loader.exec_module(module)
            return
        spec.loader = module.__loader__ = self.loader  # a later import or reload finds the module's own loader
        spec.loader_state = {"__dict__": module.__dict__.copy(), "lock": threading.RLock(), "running": False}
        module.__class__ = _DeferredModule


class _DeferredFinder(importlib.abc.MetaPathFinder):
    """Finds the modules in `DEFERRED` as the path finder does, with their loader wrapped in a `_DeferredLoader`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in DEFERRED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec  # the usual import (and its usual error)
        spec.loader = _DeferredLoader(spec.loader)
        return spec


def defer_optional_imports() -> None:
    """Registers the hook, once per process (a second call changes nothing)."""
    if not any(isinstance(finder, _DeferredFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DeferredFinder())
