"""Keras 2-era spellings that old settings files use and Keras 3's `tf.keras` lacks.

Under TF 2.21 `tf.keras` is Keras 3, whose `tf.keras.metrics` and
`tf.keras.losses` no longer export six loss functions by their long names,
although the `keras` package still has them. Settings files written for the
original framework use those names, so the loader aliases them before it runs
a settings file. This module is the one place where the aliases are listed.
"""

import functools
import logging

# namespace of tf.keras -> function names to alias from keras.losses.
KERAS2_FUNCTION_NAMES = (
    "mean_squared_error",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error",
    "kl_divergence",
    "log_cosh",
)
ALIASED_NAMESPACES = ("metrics", "losses")

_LOG = logging.getLogger(__name__)


def _logged_once(function, qualified_name):
    used = False

    @functools.wraps(function)
    def alias(*args, **kwargs):
        nonlocal used
        if not used:
            used = True
            _LOG.info("Keras 2 name %s aliased to keras.losses.%s", qualified_name, function.__name__)
        return function(*args, **kwargs)

    return alias


def install_keras2_aliases():
    """Makes `tf.keras.metrics.mean_squared_error` and friends resolve again.

    Idempotent: names that already exist are left alone. Each alias logs once,
    the first time it is called.

    Example:

    ```python
    install_keras2_aliases()
    tf.keras.metrics.mean_squared_error(y_true, y_pred)
    ```
    """
    import keras
    import tensorflow as tf

    for namespace_name in ALIASED_NAMESPACES:
        namespace = getattr(tf.keras, namespace_name)
        for name in KERAS2_FUNCTION_NAMES:
            if hasattr(namespace, name):
                continue
            function = getattr(keras.losses, name)
            setattr(namespace, name, _logged_once(function, f"tf.keras.{namespace_name}.{name}"))
