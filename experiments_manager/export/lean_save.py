"""A SavedModel of a module holding a Keras model, with what serving needs of the model: its weights, not its
optimizers, nor the functions Keras' layers add to a SavedModel (`Exporter` and the dry build save this way).

Example:

```python
with lean_save(model):
    tf.saved_model.save(module, "exported_models/1", signatures=signatures)
```
"""

import contextlib
from typing import Any, Iterator

from experiments_manager.export.lookup_tables import layer_children_without_functions
from experiments_manager.utils.optimizers import optimizers_of


@contextlib.contextmanager
def lean_save(model: Any) -> Iterator[None]:
    """Within the block, a SavedModel of any module holding `model` leaves out the model's optimizers and the
    functions Keras' layers list for a SavedModel.

    Serving never reads an optimizer, yet a module holding the model (`self.model = model`, as the default served
    module and the original framework's settings do) saves them too: their slots and EMA averages, two to four times
    the weights, and a slower save. The optimizers are the compiled one and any other the model holds
    (`utils.optimizers.optimizers_of`: a GAN's second). And the saver asks every Keras layer for its children by
    reading all its attributes: a functional model (the model, a `keras.applications` backbone inside it) then makes
    and traces a `serving_default` of its own, a second and third trace of the whole network that nothing serves
    (the module's signatures are its own `served_model`): EfficientNetB0's save took 6.2 s, 3.2 s without them
    (Keras' `model.export`, which tracks only the variables, 4.1 s). Keras leaves its own train/predict functions
    out the same way, by what a layer lists as its children when a SavedModel is saved (`_trackable_children`);
    checkpoints are not affected. A served function that reads an optimizer variable cannot be saved this way:
    `Exporter` then saves with everything (logged).

    Args:
        model: the Keras model the served module holds (None: nothing left out).

    Example:

    ```python
    with lean_save(model):
        tf.saved_model.save(module, "exported_models/1", signatures=signatures)
    ```
    """
    flatten = getattr(model, "_flatten_layers", None)
    if model is None or flatten is None:
        yield
        return
    optimizers = {id(optimizer) for _, optimizer in optimizers_of(model)}
    layers = list(flatten(include_self=True, recursive=True))
    for layer in layers:
        object.__setattr__(layer, "_trackable_children", _saved_children_of(layer, optimizers))  # this object only
    try:
        yield
    finally:
        for layer in layers:
            object.__delattr__(layer, "_trackable_children")


def _saved_children_of(layer: Any, optimizers: set[int]) -> Any:
    """`layer._trackable_children` as the saver calls it, less the optimizers and, for a SavedModel, the functions
    (what Keras lists then, without reading every attribute: its dependencies, its tracked collections as plain
    ones)."""
    listed_by_keras = layer._trackable_children  # the class' method, bound

    def children(save_type: str = "checkpoint", **kwargs: Any) -> dict[str, Any]:
        if save_type != "savedmodel":  # a checkpoint (the SaveType enum is a str): as Keras lists them
            return dict(listed_by_keras(save_type, **kwargs))
        found = layer_children_without_functions(layer)
        return {name: child for name, child in found.items() if id(child) not in optimizers}

    return children
