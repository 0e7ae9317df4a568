"""Modules that Keras imports at start-up for optional features, run when first used instead.

`import tensorflow` imports Keras, and Keras imports scikit-learn (for `keras.wrappers`, its scikit-learn
estimators) and `matplotlib.pyplot` (for `keras.visualization`'s image galleries) whenever they are installed, which
the `[research]` extra and our own matplotlib dependency make the case: 3 of the 10.7 CPU-s of `import tensorflow`
(`tools/bench_startup.py`, BENCHMARKS.md). Keras has no setting for it, so `defer_optional_imports()` registers an
import hook that gives these modules `importlib.util.LazyLoader`: `import sklearn`-style statements bind the module
at once, and its code runs on the first attribute anybody reads (`keras.wrappers.SKLearnClassifier`, `plt.plot`),
which then behaves as before. TensorFlow's autograph reads an attribute of every loaded module when it first
converts a function, so a process that traces a `tf.function` (training, evaluating) runs them there; a server
loading SavedModels does not (`serve`: neither had run after 40 s of serving).

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


class _DeferredFinder(importlib.abc.MetaPathFinder):
    """Finds the modules in `DEFERRED` as the path finder does, with their loader wrapped in a LazyLoader."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in DEFERRED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec  # the usual import (and its usual error)
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def defer_optional_imports() -> None:
    """Registers the hook, once per process (a second call changes nothing)."""
    if not any(isinstance(finder, _DeferredFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DeferredFinder())
