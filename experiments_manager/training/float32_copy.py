"""A mixed-precision version as float32, for the edge converters.

A version trained with a mixed-precision policy computes in float16 (its SavedModel's ops are float16 ops, which
LiteRT's builtin kernels lack: the converter asks for Flex ops), while its variables are float32. Its float32 copy is
the run's model rebuilt under the float32 policy, the version's weights read into it (Keras' weights file, as
`em.load` reads it), its served module saved as a SavedModel into a temporary folder: what the converters convert.
The parity report still compares the export with the version as served (float16 compute).

Example:

```python
if computes_in_half_precision_version(experiment, settings):
    write_float32_copy(experiment, settings, 3, base / ".tmp-float32-3-123", ["image"])
```
"""

from pathlib import Path
from typing import TYPE_CHECKING

from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings.loader import Settings


def computes_in_half_precision_version(experiment: "Experiment", settings: "Settings") -> bool:
    """True when the run's model computed in float16 or bfloat16: what run.json's `mixed_precision` records (what
    the built model computed in, since issue 57), else (a run.json without it) the model built as training built
    it."""
    from experiments_manager.training.model import build_model, computes_in_half_precision, precision_policy

    recorded = experiment.run_info().get("mixed_precision")
    if isinstance(recorded, bool):
        return recorded
    with precision_policy(settings.runtime.mixed_precision):
        return computes_in_half_precision(build_model(settings))


def write_float32_copy(experiment: "Experiment", settings: "Settings", number: int, folder: Path,
                       input_names: list[str]) -> None:
    """Writes version `number` of `experiment` as a float32 SavedModel (`serving_default`) into `folder`.

    Args:
        experiment, settings, number: the run, its settings, the version.
        folder: the SavedModel folder to write.
        input_names: the version's `serving_default` input names: the copy's inputs are named the same (a model
            rebuilt in a process that built other models first gets other automatic input names).

    Raises:
        UserInputError: the rebuilt model's inputs cannot be named as the version's (several inputs, named
            automatically), or the version does not fit the rebuilt model.
    """
    import tensorflow as tf

    from experiments_manager.training.model import computes_in_half_precision, keras_names_kept
    from experiments_manager.training.version_reading import rebuilt_with_version

    with keras_names_kept(fresh=True):  # names as a command-line training process made them
        model, module = rebuilt_with_version(settings, experiment.export_dir / str(number),
                                             f"{Path(experiment.root).resolve()} version {number}: export",
                                             float32=True)
    if computes_in_half_precision(model):
        raise UserInputError(f"{settings.model_file.name}: expected the model to build in float32 for --format "
                             "litert/onnx, got one computing in float16 (the model file sets Keras' policy itself): "
                             "set it in the settings (enable_mixed_precision) instead")
    function = module.served_model
    specs = list(function.input_signature)
    if sorted(spec.name for spec in specs) != sorted(input_names):
        if len(specs) != 1 or len(input_names) != 1:
            raise UserInputError(f"{experiment.export_dir / str(number)}: expected the float32 copy's inputs to be "
                                 f"named as the version's ({', '.join(input_names)}), got "
                                 f"{', '.join(spec.name for spec in specs)}: name the model's keras.Input layers")
        renamed = tf.TensorSpec(specs[0].shape, specs[0].dtype, name=input_names[0])
        function = tf.function(lambda tensor: module.served_model(tensor), input_signature=[renamed])
    tf.saved_model.save(module, str(folder), signatures={"serving_default": function.get_concrete_function()})
