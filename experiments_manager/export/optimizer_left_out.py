"""A SavedModel of a module holding a Keras model, without the model's optimizers (`Exporter` saves this way)."""

import contextlib
from typing import Any, Iterator

from experiments_manager.utils.optimizers import optimizers_of


@contextlib.contextmanager
def optimizer_left_out(model: Any) -> Iterator[None]:
    """Within the block, a SavedModel of any module holding `model` leaves out the model's optimizers (the compiled
    one and any other it holds as an attribute, a GAN's second: `utils.optimizers.optimizers_of`).

    Serving never reads the optimizer, yet a module holding the model (`self.model = model`, as the default served
    module and the original framework's settings do) saves it too: its slots and EMA averages, two to four times
    the weights, and a slower save. Keras leaves its own train/predict functions out of a SavedModel the same way,
    by what the model lists as its children when a SavedModel is saved (`_trackable_children`); checkpoints are
    not affected. A served function that reads an optimizer variable cannot be saved this way: `Exporter` then
    saves with the optimizer (logged).

    Example:

    ```python
    with optimizer_left_out(model):
        tf.saved_model.save(module, "exported_models/1", signatures=signatures)
    ```
    """
    optimizers = {id(optimizer) for _, optimizer in optimizers_of(model)} if model is not None else set()
    children = getattr(model, "_trackable_children", None)
    if not optimizers or children is None:
        yield
        return

    def without_optimizer(save_type: str = "checkpoint", **kwargs: Any) -> dict[str, Any]:
        found: dict[str, Any] = children(save_type, **kwargs)
        if save_type == "savedmodel":  # tf.saved_model.save's object graph (the SaveType enum is a str)
            found = {name: child for name, child in found.items() if id(child) not in optimizers}
        return found

    object.__setattr__(model, "_trackable_children", without_optimizer)  # this object only, not its class
    try:
        yield
    finally:
        object.__delattr__(model, "_trackable_children")
