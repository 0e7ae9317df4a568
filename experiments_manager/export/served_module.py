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
    list with the list. Outputs are returned as a dict (`output_0`, ... unless the model already returns a dict),
    in inference mode (`training=False`: augmentation and dropout layers pass their inputs through), half-precision
    outputs of a mixed-precision model cast to float32 (`served_dtype`).
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
            if not isinstance(outputs, dict):
                outputs = {f"output_{index}": output for index, output in enumerate(tf.nest.flatten(outputs))}
            return {name: served_dtype(output) for name, output in outputs.items()}

    return ServedKerasModel()


def served_dtype(output: Any) -> Any:
    """A model output as it is served: a half-precision float (a mixed-precision model's float16 or bfloat16) cast
    to float32, so that clients read it as they read any other model's (TF Serving's `float_val`, JSON numbers);
    any other dtype as it is.

    Args:
        output: a tensor the model returned, in the traced served function.

    Example:

    ```python
    return {name: served_dtype(output) for name, output in outputs.items()}
    ```
    """
    import tensorflow as tf

    return tf.cast(output, tf.float32) if output.dtype in (tf.float16, tf.bfloat16) else output


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
    _random_state_reachable(module, model)
    return module


def version_signatures(settings: "Settings") -> tuple[str, str]:
    """The signature names of a version, each the served function: `serving_default` and the settings' model name."""
    return ("serving_default", settings.model_name)


RANDOM_STATE_ATTRIBUTE = "keras_random_state"  # the served module's list of the model's seed-generator states


def _random_state_reachable(module: Any, model: Any) -> None:
    """Makes the model's state that is not a weight (the seed of each random layer: `RandomFlip`, `RandomContrast`,
    `Dropout`... keep it in a `SeedGenerator` variable) reachable from the module, as a list attribute.

    TensorFlow's saver saves only what the module reaches by tracked attributes, and a served function that
    captures a variable it cannot reach cannot be saved ("captures tensor ... seed_generator_state ... not reachable
    from root"); Keras layers do not list their seed generators as children. A rebuilt model's module gets the same
    attribute, so a version's object graph maps to it.
    """
    weights = {id(variable) for variable in getattr(model, "weights", [])}
    state = [variable for variable in getattr(model, "variables", []) if id(variable) not in weights]
    if state:
        setattr(module, RANDOM_STATE_ATTRIBUTE, state)
