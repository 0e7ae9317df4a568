"""Modules that Keras imports at start-up for optional features, run when first used instead.

`import tensorflow` imports Keras, and Keras imports scikit-learn (for `keras.wrappers`, its scikit-learn
estimators) and `matplotlib.pyplot` (for `keras.visualization`'s image galleries) whenever they are installed, which
the `[research]` extra and our own matplotlib dependency make the case: 3 of the 10.7 CPU-s of `import tensorflow`
(`tools/bench_startup.py`, BENCHMARKS.md). Keras has no setting for it, so `defer_optional_imports()` registers an
import hook that gives these modules `importlib.util.LazyLoader`: `import sklearn`-style statements bind the module
at once, and its code runs on the first attribute anybody reads (`keras.wrappers.SKLearnClassifier`, `plt.plot`),
which then behaves as before. Reading a deferred module's own metadata (`__name__`, `__file__`, `__spec__`,
`__loader__`, `__package__`, `__cached__`) does not run it: TensorFlow's autograph reads `__file__` of every loaded
module when it first converts a function, and the import system reads `__spec__` when a module is imported again,
which with the standard library's lazy module alone ran them in every process that trains (`train`, trials, workers).
Where the standard library's lazy module class is missing (it is private), the modules are plain `LazyLoader` ones.

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
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

# The modules Keras imports only for optional features (keras/__init__.py and keras/_tf_keras/keras/__init__.py
# import `keras.wrappers`; keras/src/visualization/*.py import `matplotlib.pyplot`).
DEFERRED = frozenset({"keras.wrappers", "keras._tf_keras.keras.wrappers", "matplotlib.pyplot"})


# A deferred module's own attributes, read without running it (a name lookup in its dict, as the import system set it)
METADATA = frozenset({"__name__", "__file__", "__spec__", "__loader__", "__package__", "__cached__"})


def _metadata_aware_module_class() -> type | None:
    """The standard library's lazy module class, extended to answer `METADATA` without loading; None without it."""
    lazy = getattr(importlib.util, "_LazyModule", None)  # private: a future Python may not have it
    if not isinstance(lazy, type) or not issubclass(lazy, ModuleType):
        return None

    class MetadataAwareLazyModule(lazy):  # type: ignore[misc, valid-type]
        def __getattribute__(self, attr: str) -> object:
            if attr in METADATA:
                return object.__getattribute__(self, attr)
            return super().__getattribute__(attr)  # runs the module (and makes it a plain module again)

    return MetadataAwareLazyModule


_METADATA_AWARE = _metadata_aware_module_class()


class _DeferredLoader(importlib.util.LazyLoader):
    """A LazyLoader whose modules answer their own metadata without running."""

    def exec_module(self, module: ModuleType) -> None:
        super().exec_module(module)
        if _METADATA_AWARE is not None and type(module) is _METADATA_AWARE.__base__:
            module.__class__ = _METADATA_AWARE


class _DeferredFinder(importlib.abc.MetaPathFinder):
    """Finds the modules in `DEFERRED` as the path finder does, with their loader wrapped in a LazyLoader."""

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
