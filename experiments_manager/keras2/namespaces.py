"""Keras 2 spellings and arguments that settings files of the TF 2.14 era use, under Keras 3.

Under TF 2.21 `tf.keras` is Keras 3. Settings written for the original
framework (TF 2.14, Keras 2) call names and pass arguments that Keras 3 removed
or reads differently. The loader installs these shims before it runs a
settings file; each keeps what TF 2.14 did (checked against `tf_keras`, Keras
2's last release, in tests/e2e/test_keras2_settings.py); the optimizer `lr=` and
loss `reduction` shims log a line naming the settings file when they act:

| Keras 2 settings write | Keras 3 alone | with the shim (TF 2.14's behaviour) |
|---|---|---|
| `tf.keras.metrics.mean_squared_error` (and 5 more long names) | AttributeError | the `keras.losses` function |
| `tf.keras.optimizers.Adam(lr=0.01)` | ValueError | `lr` ignored, with a warning: Keras 2.11+ optimizers ignored it (TF 2.14 logged "`lr` is deprecated") and trained with the default learning rate |
| `tf.keras.optimizers.legacy.Adam(lr=0.01, decay=1e-4)` | ImportError | `learning_rate=0.01`, decayed as `lr / (1 + decay * iterations)` (`InverseTimeDecay`) |
| `tf.keras.optimizers.experimental.AdamW(...)` | AttributeError | the Keras 3 optimizer of that name |
| `reduction=tf.keras.losses.Reduction.AUTO` | ValueError | 'sum_over_batch_size' |
| a custom `Metric` calling `super().__init__(name, **kwargs)`, `self.add_weight('tp', initializer='zeros')` | the name read as a dtype, as a shape: ValueError | Keras 2's order: the name |

Metric objects and names are handled when the model is compiled
(`experiments_manager.keras2.metrics`), data iterators when the pipelines are
built (`experiments_manager.keras2.pipelines`). This module is the one place where
the Keras namespaces are changed; installing is idempotent.
"""

import functools
import importlib
import inspect
import logging
import sys
import traceback
import types
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

# Loss function names Keras 3's `tf.keras.metrics` / `tf.keras.losses` no longer export (keras.losses has them).
KERAS2_FUNCTION_NAMES = (
    "mean_squared_error",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error",
    "kl_divergence",
    "log_cosh",
)
ALIASED_NAMESPACES = ("metrics", "losses")
# tf.keras.optimizers.legacy in TF 2.14 (Optimizer, the abstract base, has no Keras 3 counterpart to build)
LEGACY_OPTIMIZERS = ("Adadelta", "Adagrad", "Adam", "Adamax", "Ftrl", "Nadam", "RMSprop", "SGD")
INSTALLED_MARK = "_experiments_manager_keras2"

_LOG = logging.getLogger(__name__)
_Function = TypeVar("_Function", bound=Callable[..., Any])


def install_keras2_compatibility() -> None:
    """Installs the shims listed in the module docstring (once per process).

    Example:

    ```python
    install_keras2_compatibility()
    tf.keras.optimizers.legacy.Adam(lr=0.01, decay=1e-4)  # a Keras 3 Adam with Keras 2's decay
    ```
    """
    import keras

    if getattr(keras.optimizers.Optimizer.__init__, INSTALLED_MARK, False):
        return
    for namespace_name in ALIASED_NAMESPACES:
        for namespace in _tf_keras_modules(namespace_name):
            for name in KERAS2_FUNCTION_NAMES:
                if not hasattr(namespace, name):
                    setattr(namespace, name, getattr(keras.losses, name))  # the function itself: Keras knows it
    legacy = {name: _legacy_optimizer(getattr(keras.optimizers, name)) for name in LEGACY_OPTIMIZERS}
    for namespace in _tf_keras_modules("optimizers.legacy"):  # modules whose names raise ImportError when called
        for name, value in legacy.items():
            setattr(namespace, name, value)
    experimental = {name: value for name, value in vars(keras.optimizers).items()
                    if isinstance(value, type) and issubclass(value, keras.optimizers.Optimizer)}
    for parent in _tf_keras_modules("optimizers"):
        if not hasattr(parent, "experimental"):
            module = types.ModuleType(f"{parent.__name__}.experimental")
            vars(module).update(experimental)
            parent.experimental = sys.modules[module.__name__] = module
    keras.optimizers.Optimizer.__init__ = _ignoring_lr(keras.optimizers.Optimizer.__init__)
    keras.losses.Loss.__init__ = _auto_reduction(keras.losses.Loss.__init__)
    keras.metrics.Metric.__init__ = _keras2_metric_init(keras.metrics.Metric.__init__)
    keras.metrics.Metric.add_weight = _keras2_add_weight(keras.metrics.Metric.add_weight)


def _tf_keras_modules(suffix: str) -> list[Any]:
    """The module objects a settings file may reach as `tf.keras.<suffix>`: TensorFlow loads Keras 3's
    tf.keras API under several names (`tensorflow.keras.X`, `keras._tf_keras.keras.X`)."""
    import tensorflow as tf

    found = [functools.reduce(getattr, suffix.split("."), tf.keras)]
    for prefix in ("tensorflow.keras", "keras._tf_keras.keras"):
        try:
            found.append(importlib.import_module(f"{prefix}.{suffix}"))
        except ImportError:
            pass
    unique = {id(module): module for module in found}
    return list(unique.values())


def _marked(wrapper: _Function) -> _Function:
    setattr(wrapper, INSTALLED_MARK, True)
    return wrapper


def _ignoring_lr(original: Callable[..., Any]) -> Callable[..., None]:
    """Keras 2.11+ optimizers (TF 2.11-2.15) logged a warning for `lr=` and used their default learning rate."""

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if "lr" in kwargs:
            lr = kwargs.pop("lr")
            _LOG.warning("%s%s(lr=%s): `lr` is ignored, as TF 2.14's Keras ignored it: training uses "
                         "learning_rate=%s. Write learning_rate=%s to train with it.", _user_line(),
                         type(self).__name__, lr, kwargs.get("learning_rate", "the default"), lr)
        original(self, *args, **kwargs)

    return _marked(__init__)


def _auto_reduction(original: Callable[..., Any]) -> Callable[..., None]:
    """Keras 2's Reduction.AUTO meant SUM_OVER_BATCH_SIZE outside custom distribution loops."""

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("reduction") == "auto":
            kwargs["reduction"] = "sum_over_batch_size"
            _LOG.info("%s%s(reduction='auto'): Keras 2's AUTO, read as 'sum_over_batch_size'", _user_line(),
                      type(self).__name__)
        original(self, *args, **kwargs)

    return _marked(__init__)


def _keras2_metric_init(original: Callable[..., Any]) -> Callable[..., None]:
    """Keras 2's `Metric.__init__(name=None, dtype=None, **kwargs)` where Keras 3's is `(dtype=None, name=None)`: a
    custom metric's `super().__init__(name, **kwargs)` gives its name first."""
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if args and isinstance(args[0], str) and not _is_dtype(args[0]) and "name" not in kwargs:
            kwargs["name"] = args[0]  # Keras 2's order: name, dtype
            args = args[1:]
        original(self, *args, **kwargs)

    return _marked(__init__)


def _is_dtype(text: str) -> bool:
    import keras

    try:
        keras.backend.standardize_dtype(text)
        return True
    except (ValueError, TypeError):
        return False


def _keras2_add_weight(original: Callable[..., Any]) -> Callable[..., Any]:
    """Keras 2's `Metric.add_weight(name, shape=(), aggregation=tf.VariableAggregation.SUM, synchronization=...,
    initializer=None, dtype=None)`: the name first, TensorFlow's aggregation enum, a synchronization Keras 3 has not."""

    @functools.wraps(original)
    def add_weight(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], str):  # Keras 3's first parameter is the shape, never a string
            kwargs["name"] = args[0]
            args = args[1:]
        kwargs.pop("synchronization", None)
        aggregation = kwargs.pop("aggregation", None)
        if aggregation is None:
            return original(self, *args, **kwargs)
        arguments = dict(zip(("shape", "initializer", "dtype", "name"), args), **kwargs)
        return self.add_variable(shape=arguments.get("shape", ()), initializer=arguments.get("initializer") or "zeros",
                                 dtype=arguments.get("dtype"), name=arguments.get("name"),
                                 aggregation=getattr(aggregation, "name", str(aggregation)).lower())

    return _marked(add_weight)


def _legacy_optimizer(base: Any) -> type[Any]:
    """A Keras 3 optimizer class taking Keras 2 legacy arguments: `lr` and a time-based `decay`."""
    import keras

    signature = inspect.signature(base.__init__)
    default_rate = signature.parameters["learning_rate"].default

    class Legacy(base):
        def __init__(self, *args: Any, lr: Optional[float] = None, decay: float = 0.0, **kwargs: Any) -> None:
            kwargs = {**signature.bind_partial(self, *args).arguments, **kwargs}  # positional ones by name
            kwargs.pop("self")
            if lr is not None:
                kwargs["learning_rate"] = lr
            if decay:
                initial = kwargs.get("learning_rate", default_rate)
                kwargs["learning_rate"] = keras.optimizers.schedules.InverseTimeDecay(initial, 1, decay)
            super().__init__(**kwargs)

    Legacy.__name__ = Legacy.__qualname__ = base.__name__
    Legacy.__doc__ = (f"Keras 2's `tf.keras.optimizers.legacy.{base.__name__}`: a Keras 3 {base.__name__} with "
                      "`lr` read as `learning_rate` and `decay` as `lr / (1 + decay * iterations)`.")
    return Legacy


def _user_line() -> str:
    """'settings.py line 12: ' for the innermost frame outside Keras, TensorFlow and this package."""
    package = str(Path(__file__).resolve().parent)
    for frame in reversed(traceback.extract_stack()[:-2]):
        name = frame.filename
        if package not in name and "site-packages" not in name and "<frozen" not in name:
            return f"{Path(name).name} line {frame.lineno}: "
    return ""
