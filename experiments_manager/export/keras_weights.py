"""A version's weights in Keras' own weights file: what a rebuilt model reads them from, by Keras' contract.

Every version holds, beside its SavedModel, `assets.extra/model.weights.h5`: the Keras weights file of the model's
EMA weights (the values the SavedModel serves), written by Keras' own `save_weights` walk without the optimizer.
A model rebuilt from the run's model file reads it with Keras' own `load_weights` walk, which matches weights by the
model's layer structure (each layer by its class and position, not by its generated name), so a Sequential model, a
Sequential or functional model nested in another, a functional or a subclassed model all come back as Keras defines
them (the SavedModel's object-graph paths differ between a trained Sequential model and the same code rebuilt).
Before anything is assigned, the file's weights are compared with the rebuilt model's, path by path and shape by
shape (the rebuilt model's own file, made in memory), each named as Keras names the variable (`dense/kernel`): the
first that differs is one line (a model of another architecture is `--init-from`'s case: its blocks matched by
name, `training/block_matching.py`). A resume of changed code compares its checkpoint's weights file the same way
(`differences`).

Versions written before this file existed are read through their object graph (`saved_state.restore_version`).

Example:

```python
write_weights_file(model, version_folder)                   # at export, EMA weights swapped in
read_weights_file(version_folder, rebuilt_model)           # or WeightsDiffer naming the first weight that differs
```
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

from experiments_manager.export.lookup_tables import VersionMismatch
from experiments_manager.run.weights_file import WeightsContent, WeightsFileMaker, content_bytes, weights_file_bytes
from experiments_manager.utils.optimizers import optimizers_of

WEIGHTS_FILE = "assets.extra/model.weights.h5"  # TF Serving leaves assets.extra/ to its users
_VARS = "/vars/"  # between a saveable's path and a weight's index in Keras' weights file


class WeightsDiffer(VersionMismatch):
    """The version's weights and the new model's differ in path or shape (nothing was assigned)."""


def version_weights_bytes(model: Any) -> bytes | memoryview:
    """The Keras weights file of a version of `model`, made in memory: its weights, every optimizer left out (the
    compiled one and any other it holds, a GAN's second: their state is a checkpoint's, and a model rebuilt to read
    the version has not built them)."""
    return weights_file_bytes(model, left_out=version_left_out(model))


def version_left_out(model: Any) -> list[Any]:
    """What a version's weights file leaves out: every optimizer `model` holds."""
    return [optimizer for _, optimizer in optimizers_of(model)]


def version_weights_maker(model: Any) -> WeightsFileMaker:
    """A `WeightsFileMaker` of `model`'s versions (every optimizer left out): the walk recorded once per run."""
    return WeightsFileMaker(model, lambda: version_left_out(model))


def write_weights_file(model: Any, version_folder: "str | Path", weights: "WeightsContent | None" = None) -> None:
    """Writes the Keras weights file of `model` as it is now (every optimizer left out) into `version_folder`.

    Args:
        model: the built Keras model, holding the values to write.
        version_folder: a version's (temporary) folder.
        weights: the file's content taken earlier (its bytes, or a `weights_file.WeightsCopy` made on the training
            thread), for a version written on another thread (default None: made from `model` now).
    """
    path = Path(version_folder) / WEIGHTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content_bytes(weights) if weights is not None else version_weights_bytes(model))


def has_weights_file(version_folder: "str | Path") -> bool:
    """True when the version holds a Keras weights file (every version this engine exports since issue 57; an
    earlier engine's does not: `saved_state.restore_version` reads those through the object graph)."""
    return (Path(version_folder) / WEIGHTS_FILE).is_file()


def differences(weights_file: "str | Path", model: Any) -> list[str]:
    """Why a Keras weights file (a version's, a checkpoint's) does not fit `model`: each weight of the model the file
    does not hold with its shape, then each the file holds that the model lacks, one phrase each, named as Keras names
    the model's variable, ordered by their paths in the file.

    Args:
        weights_file: the `.weights.h5` file.
        model: the built Keras model.

    Returns:
        the phrases (empty when the file fits).

    Example:

    ```python
    differences("checkpoints/ckpt-000003/model.weights.h5", model)
    # ["dense/kernel: expected the new model's shape (1, 8), got (1, 32)", ...]
    ```
    """
    return [phrase for _, phrase in _compared(_shapes(weights_file), _live_shapes(model), model)]


def read_weights_file(version_folder: "str | Path", model: Any) -> None:
    """Reads a version's Keras weights file into the rebuilt `model`, by Keras' own `load_weights` walk, once every
    weight of the file and of the model is found in the other with its shape.

    Args:
        version_folder: the version's folder (checked whole by the caller).
        model: the rebuilt, built Keras model.

    Raises:
        WeightsDiffer: a weight that does not fit, named in one line (nothing assigned).

    Example:

    ```python
    read_weights_file("exported_models/3", model)
    ```
    """
    path = Path(version_folder) / WEIGHTS_FILE
    compared = _compared(_shapes(path), _live_shapes(model), model)
    if compared:
        others = len(compared) - 1
        more = f" ({others} more weight{'s differ' if others > 1 else ' differs'})" if others else ""
        raise WeightsDiffer(f"{compared[0][1]}{more}")
    with warnings.catch_warnings():  # what Keras would warn of was checked above
        warnings.simplefilter("ignore")
        model.load_weights(str(path), objects_to_skip=[optimizer for _, optimizer in optimizers_of(model)])


def _compared(saved: dict[str, tuple[int, ...]], live: dict[str, tuple[int, ...]],
              model: Any) -> list[tuple[str, str]]:
    """(path in the file, phrase) of each weight that differs between a file's `saved` shapes and the `live` ones of
    `model`'s own file; the weights of a block the model left unbuilt in one phrase naming the block."""
    found = []
    for name in sorted(live):
        if name not in saved:
            found.append((name, f"{_variable_name(model, name)}: expected a weight of shape {live[name]}, got none"))
        elif saved[name] != live[name]:
            found.append((name, f"{_variable_name(model, name)}: expected the new model's shape {live[name]}, got "
                                f"{saved[name]}"))
    unbuilt: dict[str, list[str]] = {}
    for name in sorted(saved):
        if name not in live:
            block = _unbuilt_block(model, name)
            if block is None:
                found.append((name, f"{_readable(name)}: expected no such weight (the new model has none), got one "
                                    f"of shape {saved[name]}"))
            else:
                unbuilt.setdefault(block, []).append(name)
    for block, names in unbuilt.items():
        found.append((names[0], f"{block}: expected a block built as in the version (its {len(names)} weight"
                                f"{'s' if len(names) > 1 else ''}, the first of shape {saved[names[0]]}), got one "
                                "the rebuilt model left unbuilt (Keras builds it at its first call, which only "
                                "training makes); give it a keras.Input or build it in the model's __init__"))
    return found


def _live_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """The shapes of `model`'s own Keras weights file for a version, made in memory (every optimizer left out)."""
    return _shapes(io.BytesIO(bytes(version_weights_bytes(model))))


def _shapes(file: "str | Path | io.BytesIO") -> dict[str, tuple[int, ...]]:
    """Each weight's path in a Keras weights file -> its shape."""
    import h5py

    shapes: dict[str, tuple[int, ...]] = {}
    with h5py.File(file, "r") as opened:
        opened.visititems(lambda name, item: shapes.__setitem__(name, tuple(item.shape))
                          if isinstance(item, h5py.Dataset) else None)
    return shapes


def _variable_name(model: Any, name: str) -> str:
    """The name of the variable of `model` that Keras' weights file holds at `name` (`layers/dense/vars/0`): its
    layers from the top as the model's code names them (`utils/layer_names.py`: `projector/dense/kernel`, never
    Keras' `sequential_1`), then the variable's own name; the path in the file when the walk does not find it."""
    owner, parts, layers = _walked(model, name)
    try:
        if owner is not None and parts[0] == "vars":
            variables = list(owner._trainable_variables) + list(owner._non_trainable_variables)
            return "/".join([*_names_from_top(model, layers), str(variables[int(parts[1])].name)])
    except (AttributeError, IndexError, ValueError, TypeError):
        pass
    return _readable(name)


def _unbuilt_block(model: Any, name: str) -> "str | None":
    """The names (`projector`) of the outermost layer on the way to the weight at `name` in a Keras weights file
    that `model` left unbuilt, from the top, as the model's code named them (`utils/layer_names.py`); None when all
    are built."""
    _, _, layers = _walked(model, name)
    for depth, layer in enumerate(layers):
        if not layer.built:
            return "/".join(_names_from_top(model, layers[:depth + 1]))
    return None


def _names_from_top(model: Any, layers: list[Any]) -> list[str]:
    """Each of `layers` (a path down from `model`, as `_walked` passed them) as the model's code names it."""
    from experiments_manager.utils.layer_names import shown_name

    return [shown_name(parent, child) for parent, child in zip([model, *layers], layers)]


def _walked(model: Any, name: str) -> "tuple[Any, list[str], list[Any]]":
    """Follows the path of a weight in Keras' weights file (`layers/sequential/layers/dense/vars/0`) through `model`
    as Keras' saving walks it (an attribute by its name; each layer of a list named after its class, numbered within
    the list: `dense`, `dense_1`). Returns (the object reached, or None when the walk fails; what is left of the
    path: `['vars', '0']`; the layers passed, from the top)."""
    from keras.src.utils.naming import to_snake_case

    found: Any = model
    parts = name.split("/")
    passed: list[Any] = []
    try:
        while len(parts) > 2:
            attribute, key = parts[0], parts[1]
            if attribute == "layers":
                counts: dict[str, int] = {}
                by_name = {}
                for layer in found.layers:
                    base = to_snake_case(type(layer).__name__)
                    by_name[base if base not in counts else f"{base}_{counts[base]}"] = layer
                    counts[base] = counts.get(base, 0) + 1
                found = by_name[key]
                parts = parts[2:]
            else:
                found = getattr(found, attribute)
                parts = parts[1:]
            if hasattr(found, "built"):
                passed.append(found)
    except (AttributeError, KeyError, IndexError, ValueError, TypeError):
        return None, parts, passed
    return found, parts, passed


def _readable(name: str) -> str:
    """`layers/dense_1/vars/0` -> `layers/dense_1 weight 0`."""
    owner, _, index = name.rpartition(_VARS)
    return f"{owner} weight {index}" if owner else name
