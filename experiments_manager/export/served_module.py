"""What a version exports: the settings' `get_served_module(model, model_name)`, or the model's own call with its
`keras.Input` signature (`default_served_module`). Checked once, before anything is saved."""

import re
from typing import TYPE_CHECKING, Any, Optional

from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.settings.loader import Settings


def default_served_module(model: Any, model_name: str) -> Any:
    """The served module when the settings define no `get_served_module`: the model's own call.

    The input signature comes from the model's `keras.Input` layers, in the order of `model.inputs`; a model built
    on a dict of inputs is called with that dict (its signature's inputs named by the dict's keys), one built on a
    list with the list. Outputs are returned as a dict (`output_0`, ... unless the model already returns a dict).
    """
    import keras
    import tensorflow as tf

    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise UserInputError(
            f"{model_name}: the model has no Input layers (subclassed model): "
            "define get_served_module(model, model_name) in the settings"
        )
    structure = getattr(model, "input", None)  # a functional model's inputs as it was built on them
    if structure is None or len(keras.tree.flatten(structure)) != len(inputs):
        structure = list(inputs) if len(inputs) > 1 else inputs[0]
    keys = _flat_keys(structure)
    specs = [
        tf.TensorSpec(shape=tensor.shape, dtype=tensor.dtype, name=keys[index] if keys else _tensor_name(tensor, index))
        for index, tensor in enumerate(keras.tree.flatten(structure))
    ]

    class ServedKerasModel(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        @tf.function(input_signature=specs)
        def served_model(self, *tensors: Any) -> dict[str, Any]:
            outputs = self.model(keras.tree.pack_sequence_as(structure, list(tensors)), training=False)
            if isinstance(outputs, dict):
                return outputs
            return {f"output_{index}": output for index, output in enumerate(tf.nest.flatten(outputs))}

    return ServedKerasModel()


def _flat_keys(structure: Any) -> Optional[list[str]]:
    """The keys of a flat dict of inputs in the order `keras.tree.flatten` gives its values, else None."""
    import keras

    if not isinstance(structure, dict) or any(isinstance(value, (dict, list, tuple)) for value in structure.values()):
        return None
    return [re.sub(r"[^A-Za-z0-9_]", "_", str(key)) or f"input_{index}"
            for index, key in enumerate(keras.tree.flatten({key: key for key in structure}))]


def _tensor_name(tensor: Any, index: int) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", getattr(tensor, "name", "") or "")
    return name or f"input_{index}"


def served_module(settings: "Settings", model: Any) -> Any:
    """The module exported for `model`: the settings' `get_served_module`, else the model's own call; checked."""
    build = settings.export.get_served_module or default_served_module
    module = build(model, settings.model_name)
    function = getattr(module, "served_model", None)
    if getattr(function, "input_signature", None) is None:
        raise UserInputError(f"{settings.path.name}: get_served_module: expected a tf.Module whose served_model is a "
                             f"tf.function with an input_signature, got {type(module).__name__}")
    return module
