"""Served module -> versioned SavedModel, atomically, with the EMA weights swapped in.

Layout (TF Serving): `exported_models/<N>/saved_model.pb`. A version is written
to `exported_models/.tmp-<N>-<pid>/`, its signatures checked, then renamed to
`<N>`, with N one more than any version this experiment ever exported. Readers
(model servers) ignore dot-prefixed folders, so they never see a partial version.
"""

import contextlib
import os
import re
from pathlib import Path

from experiments_manager.ema import inner_optimizer
from experiments_manager.utils.atomic import (folder_replaced_atomically, remove_leftovers, remove_tree_atomically,
                                              write_text_atomically)
from experiments_manager.utils.errors import UserInputError

VERSION_PATTERN = re.compile(r"^\d+$")


@contextlib.contextmanager
def ema_weights_swapped_in(model, optimizer):
    """Within the block, the model holds the optimizer's EMA (Polyak) weights.

    Uses the optimizer's public `finalize_variable_values`, then restores the
    exact training values. Does nothing when the optimizer keeps no EMA.

    Example:

    ```python
    with ema_weights_swapped_in(model, model.optimizer):
        predictions = model.predict(x)
    ```
    """
    if not getattr(inner_optimizer(optimizer), "use_ema", False):
        yield
        return
    variables = model.trainable_variables
    saved = [variable.numpy() for variable in variables]
    optimizer.finalize_variable_values(variables)
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)


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


class Exporter:
    """Exports served-model versions of a training model.

    Args:
        experiment: the `Experiment` (its `exported_models/` is the base path).
        settings: the `Settings` (served module, model name, retention).
        model: the Keras model being trained.

    Example:

    ```python
    exporter = Exporter(experiment, settings, model)
    version = exporter.export()   # exported_models/<version>/
    ```
    """

    def __init__(self, experiment, settings, model):
        self.experiment = experiment
        self.settings = settings
        self.model = model
        self.base = Path(experiment.export_dir)
        self._module = None
        self.base.mkdir(parents=True, exist_ok=True)
        write_models_config(experiment.models_config, settings.model_name, self.base)

    def versions(self):
        """Version numbers present, oldest first."""
        return sorted(int(path.name) for path in self.base.iterdir() if VERSION_PATTERN.match(path.name))

    def last_version(self):
        recorded = self.experiment.run_info().get("last_exported_version") or 0
        present = self.versions()
        last = max([recorded] + present)
        return last or None

    def _served_module(self):
        if self._module is None:
            self._module = served_module(self.settings, self.model)
        return self._module

    def export(self):
        """Writes the next version with EMA weights; returns its number."""
        import tensorflow as tf

        module = self._served_module()
        signature = module.served_model.get_concrete_function()
        version = (self.last_version() or 0) + 1
        remove_leftovers(self.base)  # of an export a killed run left half-written
        signatures = {"serving_default": signature, self.settings.model_name: signature}
        with folder_replaced_atomically(self.base / f".tmp-{version}-{os.getpid()}", self.base / str(version)) as tmp:
            with ema_weights_swapped_in(self.model, self.model.optimizer):
                tf.saved_model.save(module, str(tmp), signatures=signatures)
            check_signatures(tmp, tuple(signatures))
        self._apply_retention()
        return version

    def _apply_retention(self):
        for version in self.versions()[: -self.settings.export.versions_to_keep]:
            remove_tree_atomically(self.base / str(version))


def served_module(settings, model):
    """The module exported for `model`: the settings' `get_served_module`, else the model's own call; checked."""
    build = settings.export.get_served_module or default_served_module
    module = build(model, settings.model_name)
    function = getattr(module, "served_model", None)
    if getattr(function, "input_signature", None) is None:
        raise UserInputError(f"{settings.path.name}: get_served_module: expected a tf.Module whose served_model is a "
                             f"tf.function with an input_signature, got {type(module).__name__}")
    return module


def check_signatures(saved_model_dir, expected):
    """Raises when the SavedModel at `saved_model_dir` lacks an expected signature."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    found = set(proto.meta_graphs[0].signature_def)
    missing = [name for name in expected if name not in found]
    if missing:
        raise RuntimeError(f"{saved_model_dir}: signatures {missing} missing after export (found {sorted(found)})")


def write_models_config(path, model_name, base_path, num_versions=1):
    """Writes a TF Serving `models.config` text proto serving `base_path`."""
    from experiments_manager.serving.config import ModelSource, models_config_text

    source = ModelSource(model_name, Path(base_path), num_versions=num_versions)
    write_text_atomically(path, models_config_text([source]))
