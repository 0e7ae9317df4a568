"""TensorFlow ops called on symbolic Keras tensors become layers of the model, as Keras 2 made them.

A functional model of the Keras 2 era often applies TensorFlow's API to the tensors of the model being built
(`tf.concat([a, b], axis=-1)`, `tf.reduce_mean(h, axis=1)`, `tf.nn.relu(h)`, `tf.expand_dims(h, -1)`,
`tf.math.l2_normalize(h)`): Keras 2 turned each such call into a `TFOpLambda` layer. Keras 3 refuses them ("A
KerasTensor cannot be used as input to a TensorFlow function"). Here, while a model file builds its model
(`tf_ops_as_layers()`, which `training.model.build_model` opens), the same mechanism as Keras 2's is in force: TensorFlow's op
dispatch (`tf.__internal__.dispatch.GlobalOpDispatcher`, which every public TensorFlow API supporting dispatch
calls when its arguments cannot be converted to tensors) hands such a call to `TFOpLayer`, a Keras layer that calls
the op. The layer is part of the model like any other: trained, checkpointed, exported, served, and rebuilt by
the model file when a run is read back. The dispatcher is registered with TensorFlow once per process and answers
only inside the block, so no other code sees a change.

The call's arguments are kept as given, each Keras tensor in them (nested in a list too: `tf.concat([a, b])`;
variadic: `tf.einsum("ij,jk", a, b)`) replaced by the layer's input in its place. Operators (`h * 2.0`, `h[:, 0]`)
are Keras 3's own on Keras tensors. What TensorFlow cannot dispatch (a function that is no TensorFlow API, one
without dispatch support such as `tf.signal.rfft`) still fails with Keras's own advice, which the dry build reports
whole, naming the line of the user's file.

Example:

```python
with tf_ops_as_layers():
    inputs = keras.Input((10, 3))
    pooled = tf.reduce_mean(keras.layers.Conv1D(4, 3)(inputs), axis=1)   # a TFOpLayer named 'tf.math.reduce_mean'
```
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable, Iterator, Optional, cast

import keras
import tensorflow as tf

_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("experiments_manager_tf_ops_as_layers", default=False)
# the one dispatcher registered with TensorFlow in this process (TensorFlow keeps it)
_REGISTERED: list[_KerasTensorOps] = []


@contextlib.contextmanager
def tf_ops_as_layers() -> Iterator[None]:
    """Within the block, a TensorFlow API called on a symbolic Keras tensor returns the output of a `TFOpLayer`.

    Example:

    ```python
    with tf_ops_as_layers():
        model = module.model(settings.module)
    ```
    """
    if not _REGISTERED:
        dispatcher = _KerasTensorOps()
        dispatcher.register()
        _REGISTERED.append(dispatcher)
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


class _KerasTensorOps(tf.__internal__.dispatch.GlobalOpDispatcher):
    """Hands a TensorFlow API call with a symbolic Keras tensor among its arguments to a `TFOpLayer` (inside
    `tf_ops_as_layers` only)."""

    def handle(self, op: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not _ACTIVE.get() or not _holds_keras_tensors((args, kwargs)):
            return self.NOT_SUPPORTED
        return op_as_layer(op, args, kwargs)


def _holds_keras_tensors(structure: Any) -> bool:
    return any(isinstance(item, keras.KerasTensor) for item in tf.nest.flatten(structure))


def op_as_layer(op: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The output of a new `TFOpLayer` calling `op(*args, **kwargs)`: the Keras tensors among the arguments (nested
    in lists too) are the layer's inputs, the rest is kept as it was given (`name` is dropped: the layer is named
    after the op)."""
    call = (list(args), {key: value for key, value in kwargs.items() if key != "name"})
    tensors = [item for item in tf.nest.flatten(call) if isinstance(item, keras.KerasTensor)]
    slots = iter(range(len(tensors)))
    structure = tf.nest.map_structure(
        lambda item: _Slot(next(slots)) if isinstance(item, keras.KerasTensor) else item, call)
    return TFOpLayer(op, structure)(tensors)


class _Slot:
    """Where the layer's input number `index` goes in the op's arguments."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"<input {self.index}>"


class TFOpLayer(keras.layers.Layer):
    """A TensorFlow API call in a model, Keras 2's `TFOpLambda`: `function(*args, **kwargs)` with the layer's
    inputs (the Keras tensors of the call) in their places.

    Args:
        function: the TensorFlow API (`tf.concat`, `tf.math.reduce_mean`...).
        call: `(args, kwargs)` as the call gave them, each Keras tensor replaced by its input's slot.
        name: the layer's name (default: `tf.<the API's name>`, made unique).

    Example:

    ```python
    pooled = op_as_layer(tf.math.reduce_mean, (hidden,), {"axis": 1})   # through TFOpLayer
    ```
    """

    def __init__(self, function: Callable[..., Any], call: tuple[Any, ...], name: Optional[str] = None,
                 **kwargs: Any) -> None:
        from keras.src.utils import naming

        self.function = function
        self.symbol = _symbol(function)
        super().__init__(name=name or naming.uniquify(f"tf.{self.symbol}"), autocast=False, **kwargs)
        self.call_structure = call

    def compute_output_spec(self, inputs: Any) -> Any:
        from keras.src import backend

        # Keras 3 marks `dense * 2.0` sparse, where Keras 2's tensor was dense: traced as dense
        dense = [keras.KerasTensor(item.shape, item.dtype) if item.sparse else item for item in inputs]
        return backend.compute_output_spec(self.call, dense)

    def call(self, inputs: Any) -> Any:
        args, kwargs = tf.nest.map_structure(lambda item: inputs[item.index] if isinstance(item, _Slot) else item,
                                             self.call_structure)
        return self.function(*args, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "function": self.symbol}


def _symbol(function: Callable[..., Any]) -> str:
    """The TensorFlow API name of `function` ('math.reduce_mean'), else its own name."""
    from tensorflow.python.util.tf_export import get_canonical_name_for_symbol

    return cast(str, get_canonical_name_for_symbol(function) or getattr(function, "__name__", "op"))
