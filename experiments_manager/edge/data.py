"""The samples an edge export reads from the settings' pipelines, as {input name: array} batches beside their labels.

- `validation_batches`: the validation pipeline (`get_input_pipeline(raw_data_dir_val, isTraining=False, ...)`),
  read whole, for the parity report;
- `calibration_batches`: the first `count` batches of the training pipeline (`isTraining=True`), with the run's seed
  set first, so the same run calibrates on the same batches every time (int8).

A batch's inputs are named as the served signature names them: a pipeline giving a dict keeps its keys; a single
tensor goes to the signature's only input; a tuple goes to the inputs in the signature's positional order (the served
function's `input_signature`, the Keras model's `inputs` order, as `SavedModelModel.tensors()` lists them). Each input
is cast to the signature's dtype (a float64 pipeline feeds a float32 model). Labels that are not one array (a
multi-output model's tuple, a dict) are kept as None: no metrics, as `evaluate` treats them.

Example:

```python
inputs = SavedModelModel(version_dir).tensors()["inputs"]   # [{'name': 'image', 'dtype': 'float32', ...}]
batches = validation_batches(settings, inputs)    # [({'image': array(32, 16, 16, 1)}, labels), ...]
calibration = calibration_batches(settings, inputs, count=16, seed=7)
```
"""

from typing import TYPE_CHECKING, Optional

import numpy as np

from experiments_manager.edge.formats import DEFAULT_CALIBRATION_BATCHES
from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from pathlib import Path

    from experiments_manager.edge.formats import Arrays, Batch, TensorInfo
    from experiments_manager.settings.data_folders import DataFolder
    from experiments_manager.settings.loader import Settings


def named_inputs(x: object, inputs: "list[TensorInfo]", where: str) -> "Arrays":
    """{input name: array of the signature's dtype} of a pipeline's `x` for a signature whose inputs are `inputs`.

    Args:
        x: a batch's inputs: a dict, a tensor, or a tuple / list of tensors (in the signature's positional order).
        inputs: the served signature's inputs in positional order, each {'name': ..., 'dtype': ...}
            (`EdgeModel.tensors()["inputs"]`).
        where: the pipeline, for the message.

    Raises:
        UserInputError: the names or the count do not match.

    Example:

    ```python
    named_inputs(np.zeros((4, 1)), [{"name": "input", "dtype": "float32"}], "validation pipeline")   # {'input': ...}
    ```
    """
    dtypes = {tensor["name"]: tensor["dtype"] for tensor in inputs}
    names = list(dtypes)
    if isinstance(x, dict):
        given = {str(name): value for name, value in x.items()}
        if sorted(given) != sorted(names):
            raise UserInputError(f"{where}: inputs: expected the served signature's names {', '.join(sorted(names))},"
                                 f" got {', '.join(sorted(given))}")
    else:
        tensors = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(tensors) != len(names):
            raise UserInputError(f"{where}: inputs: expected {len(names)} ({', '.join(names)}), got {len(tensors)}")
        given = dict(zip(names, tensors))
    return {name: np.asarray(given[name]).astype(dtypes[name], copy=False) for name in names}


def _batches(settings: "Settings", folder: "DataFolder", training: bool, inputs: "list[TensorInfo]",
             limit: Optional[int], labelled: bool = True) -> "list[Batch]":
    from experiments_manager.runs.evaluation import input_pipeline

    dataset, steps = input_pipeline(settings, folder, training=training, reader="export (edge)")
    count = min(value for value in (steps, limit) if value) if (steps or limit) else None
    where = f"{settings.path.name}: get_input_pipeline(isTraining={training})"
    batches = []
    for batch in (dataset.take(count) if count else dataset):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        labels = batch[1] if labelled and isinstance(batch, (tuple, list)) and len(batch) > 1 else None
        batches.append((named_inputs(x, inputs, where), _as_array(labels)))
    if not batches:
        raise UserInputError(f"{where}: the dataset is empty: expected batches to compare and calibrate on")
    return batches


def _as_array(labels: object) -> Optional[np.ndarray]:
    """One array of labels, or None for none and for several (a tuple, list or dict: no metrics, as `evaluate`)."""
    return None if labels is None or isinstance(labels, (dict, list, tuple)) else np.asarray(labels)


def validation_batches(settings: "Settings", inputs: "list[TensorInfo]",
                       run_folder: "Optional[str | Path]" = None) -> "list[Batch]":
    """[(inputs, labels)] of the validation pipeline, bounded as training bounds it (a finite dataset whole, else
    `nb_val_samples // batch_size` batches or a Keras 2 iterator's own steps).

    Args:
        settings: the run's `Settings`.
        inputs: the served signature's inputs in positional order (`EdgeModel.tensors()["inputs"]`).
        run_folder: the run's folder, where a relative data folder is also looked for (default None).

    Raises:
        UserInputError: an endless pipeline with nothing to bound it, one line naming the export.

    Example:

    ```python
    validation_batches(settings, model.tensors()["inputs"])[0][0]["input"].shape   # (50, 1)
    ```
    """
    from experiments_manager.settings.data_folders import data_folder

    return _batches(settings, data_folder(settings, "val_dir", run_folder), False, inputs, None)


def calibration_batches(settings: "Settings", inputs: "list[TensorInfo]", count: int = DEFAULT_CALIBRATION_BATCHES,
                        seed: Optional[int] = None, run_folder: "Optional[str | Path]" = None) -> "list[Arrays]":
    """The inputs of the first `count` batches of the training pipeline, the seed set first.

    Args:
        settings: the run's `Settings`.
        inputs: the served signature's inputs in positional order (`EdgeModel.tensors()["inputs"]`).
        count: how many batches (default `DEFAULT_CALIBRATION_BATCHES`).
        seed: the seed of Python, NumPy and TensorFlow before the pipeline is built (default None: the run's
            `random_seed`, else 0).
        run_folder: the run's folder, where a relative data folder is also looked for (default None).

    Example:

    ```python
    calibration_batches(settings, model.tensors()["inputs"], count=4)   # [{'image': array(32, 16, 16, 1)}, ...]
    ```
    """
    import keras

    from experiments_manager.settings.data_folders import data_folder

    keras.utils.set_random_seed(int(seed if seed is not None else settings.runtime.random_seed or 0))
    folder = data_folder(settings, "train_dir", run_folder)
    return [named for named, _ in _batches(settings, folder, True, inputs, count, labelled=False)]
