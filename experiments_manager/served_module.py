"""What a version exports: the settings' `get_served_module(model, model_name)`, or the model's own call with its
`keras.Input` signature (`default_served_module`). Checked once, before anything is saved."""

import re

from experiments_manager.utils.errors import UserInputError


def default_served_module(model, model_name):
    """The served module when the settings define no `get_served_module`: the model's own call.

    The input signature comes from the model's `keras.Input` layers; outputs are
    returned as a dict (`output_0`, ... unless the model already returns a dict).
    """
    import tensorflow as tf

    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise UserInputError(
            f"{model_name}: the model has no Input layers (subclassed model): "
            "define get_served_module(model, model_name) in the settings"
        )
    specs = [
        tf.TensorSpec(shape=tensor.shape, dtype=tensor.dtype, name=_tensor_name(tensor, index))
        for index, tensor in enumerate(inputs)
    ]

    class ServedKerasModel(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        @tf.function(input_signature=specs)
        def served_model(self, *tensors):
            outputs = self.model(list(tensors) if len(tensors) > 1 else tensors[0], training=False)
            if isinstance(outputs, dict):
                return outputs
            return {f"output_{index}": output for index, output in enumerate(tf.nest.flatten(outputs))}

    return ServedKerasModel()


def _tensor_name(tensor, index):
    name = re.sub(r"[^A-Za-z0-9_]", "_", getattr(tensor, "name", "") or "")
    return name or f"input_{index}"


def served_module(settings, model):
    """The module exported for `model`: the settings' `get_served_module`, else the model's own call; checked."""
    build = settings.export.get_served_module or default_served_module
    module = build(model, settings.model_name)
    function = getattr(module, "served_model", None)
    if getattr(function, "input_signature", None) is None:
        raise UserInputError(f"{settings.path.name}: get_served_module: expected a tf.Module whose served_model is a "
                             f"tf.function with an input_signature, got {type(module).__name__}")
    return module
