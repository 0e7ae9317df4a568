"""The samples an edge export reads from the settings' pipelines, as {input name: array} batches beside their labels.

- `validation_batches`: the validation pipeline (`get_input_pipeline(raw_data_dir_val, isTraining=False, ...)`),
  read whole, for the parity report;
- `calibration_batches`: the first `count` batches of the training pipeline (`isTraining=True`), with the run's seed
  set first, so the same run calibrates on the same batches every time (int8).

A batch's inputs are named as the served signature names them: a pipeline giving a dict keeps its keys; a single
tensor goes to the signature's only input; a tuple goes to the inputs in the signature's (sorted) order.

Example:

```python
batches = validation_batches(settings, ["image"])    # [({'image': array(32, 16, 16, 1)}, labels), ...]
calibration = calibration_batches(settings, ["image"], count=16, seed=7)
```
"""

from typing import Optional

import numpy as np

from experiments_manager.edge.formats import DEFAULT_CALIBRATION_BATCHES
from experiments_manager.utils.errors import UserInputError


def named_inputs(x: object, names: list, where: str) -> dict:
    """{input name: array} of a pipeline's `x` for a signature whose inputs are `names`.

    Args:
        x: a batch's inputs: a dict, a tensor, or a tuple / list of tensors.
        names: the served signature's input names.
        where: the pipeline, for the message.

    Raises:
        UserInputError: the names or the count do not match.

    Example:

    ```python
    named_inputs(np.zeros((4, 1)), ["input"], "validation pipeline")   # {'input': array(...)}
    ```
    """
    if isinstance(x, dict):
        inputs = {str(name): np.asarray(value) for name, value in x.items()}
        if sorted(inputs) != sorted(names):
            raise UserInputError(f"{where}: inputs: expected the served signature's names {', '.join(sorted(names))},"
                                 f" got {', '.join(sorted(inputs))}")
        return inputs
    tensors = list(x) if isinstance(x, (list, tuple)) else [x]
    if len(tensors) != len(names):
        raise UserInputError(f"{where}: inputs: expected {len(names)} ({', '.join(sorted(names))}), got "
                             f"{len(tensors)}")
    return {name: np.asarray(value) for name, value in zip(sorted(names), tensors)}


def _batches(settings: object, folder: str, training: bool, names: list, limit: Optional[int]) -> list:
    from experiments_manager.evaluation import input_pipeline

    dataset, steps = input_pipeline(settings, folder, training=training)
    count = min(value for value in (steps, limit) if value) if (steps or limit) else None
    where = f"{settings.path.name}: get_input_pipeline(isTraining={training})"
    batches = []
    for batch in (dataset.take(count) if count else dataset):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        labels = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
        batches.append((named_inputs(x, names, where), None if labels is None else _as_arrays(labels)))
    if not batches:
        raise UserInputError(f"{where}: the dataset is empty: expected batches to compare and calibrate on")
    return batches


def _as_arrays(labels: object) -> "np.ndarray | dict":
    return {name: np.asarray(value) for name, value in labels.items()} if isinstance(labels, dict) else \
        np.asarray(labels)


def validation_batches(settings: object, names: list) -> list:
    """[(inputs, labels)] of the whole validation pipeline.

    Args:
        settings: the run's `Settings`.
        names: the served signature's input names.

    Example:

    ```python
    validation_batches(settings, ["input"])[0][0]["input"].shape   # (50, 1)
    ```
    """
    return _batches(settings, settings.data.val_dir, False, names, None)


def calibration_batches(settings: object, names: list, count: int = DEFAULT_CALIBRATION_BATCHES,
                        seed: Optional[int] = None) -> list:
    """The inputs of the first `count` batches of the training pipeline, the seed set first.

    Args:
        settings: the run's `Settings`.
        names: the served signature's input names.
        count: how many batches (default `DEFAULT_CALIBRATION_BATCHES`).
        seed: the seed of Python, NumPy and TensorFlow before the pipeline is built (default None: the run's
            `random_seed`, else 0).

    Example:

    ```python
    calibration_batches(settings, ["image"], count=4)   # [{'image': array(32, 16, 16, 1)}, ...]
    ```
    """
    import keras

    keras.utils.set_random_seed(int(seed if seed is not None else settings.runtime.random_seed or 0))
    return [inputs for inputs, _ in _batches(settings, settings.data.train_dir, True, names, count)]
