"""What a version saved, matched to a live served module: its variables, its checkpointed resources, its lookup tables.

A SavedModel's `variables/` checkpoint holds, under the keys of its object graph, the values of the module's
variables and of every other object a TensorFlow checkpoint saves through its own protocol (`_serialize_to_tensors`):
a mutable lookup table's keys and values (the token counts of a Keras lookup layer, a
`tf.lookup.experimental.MutableHashTable` or `DenseHashTable` a custom layer holds). A static lookup table
(`tf.lookup.StaticHashTable`: the vocabulary of `TextVectorization`, `StringLookup`, `IntegerLookup`, or a table a
custom layer builds) is not in the checkpoint: its contents are in the SavedModel's graph, and a model rebuilt by its
model file holds the vocabulary the file builds, the same one only when it adapts on the same data
(`lookup_tables.py`).

- `saved_objects(module, graph)`: each checkpoint key's live object, found by the child names of its path in the
  checkpoint's object graph, the way `tf.saved_model.load` matches them (the exporter's template, a version read back).
- `restore_version(folder, module, model)`: a version read back into a rebuilt model (`em.load`, `evaluate`,
  `--init-from`): its weights from the version's Keras weights file by Keras' own walk (`keras_weights.py`), or, in
  a version an earlier engine wrote without that file, each weight found through the object graph and checked by
  shape, in the model's order, then assigned; the checkpointed resources restored through their own protocol, each static lookup table compared with the version's (a Keras
  lookup layer whose vocabulary differs gets the version's; any other table that differs is refused, named), and
  Keras' own per-layer load step run where a layer has one (an adapted `Normalization` remakes its statistics).

Example:

```python
reader = tf.train.load_checkpoint("exported_models/3/variables/variables")
objects, problem = saved_objects(module, reader.get_tensor(OBJECT_GRAPH_KEY))
restore_version("exported_models/3", served_module(settings, model), model)
```
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, cast

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

from experiments_manager.export.lookup_tables import VersionMismatch as VersionMismatch  # re-exported (fine_tuning)
from experiments_manager.export.lookup_tables import as_mapping, saved_children, tables_differing

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"  # the checkpoint's own key for its object graph
VARIABLES_PREFIX = "variables/variables"  # a SavedModel's checkpoint, under its folder
_ATTRIBUTES = "/.ATTRIBUTES/"  # between an object's path and its attribute in a checkpoint key
_VARIABLE_VALUE = "VARIABLE_VALUE"


@dataclasses.dataclass
class SavedObjects:
    """A checkpoint's saved values mapped to the live objects they were saved from.

    Args:
        variables: checkpoint key -> the live variable saved under it.
        resources: checkpoint key of an attribute -> the live object that saved it through TensorFlow's checkpoint
            protocol (a mutable lookup table), whose tensors are under that key followed by each name
            `_serialize_to_tensors` gives (`-keys`, `-values`).
    """

    variables: dict[str, Any]
    resources: dict[str, Any]

    def tensor_keys(self) -> list[str]:
        """Every checkpoint key these objects' values are saved under."""
        keys = list(self.variables)
        for key, resource in self.resources.items():
            keys += [key + name for name in resource._serialize_to_tensors()]
        return keys

    def snapshot(self) -> dict[str, npt.NDArray[Any]]:
        """Copies of the values the live objects hold now: checkpoint key -> numpy array (a table's keys and values
        as its `export` gives them)."""
        values = {key: np.array(variable.numpy(), copy=True) for key, variable in self.variables.items()}
        for key, resource in self.resources.items():
            values.update({key + name: np.array(tensor.numpy(), copy=True)
                           for name, tensor in resource._serialize_to_tensors().items()})
        return values

    def first_difference(self, read: Callable[[str], npt.NDArray[Any]], saved_keys: set[str]) -> Optional[str]:
        """None when the live objects hold, in shape, dtype and value, what `read(key)` gives for each of
        `saved_keys` (a table's contents compared as a mapping: its export order is the hash table's); else why
        not."""
        if saved_keys != set(self.tensor_keys()):
            differing = sorted(saved_keys ^ set(self.tensor_keys()))[:3]
            return f"the checkpoint's keys and the mapped objects differ: {differing}"
        for key, variable in self.variables.items():
            saved, live = read(key), np.asarray(variable.numpy())
            same = np.array_equal(saved, live, equal_nan=saved.dtype.kind in "fc")
            if saved.dtype != live.dtype or saved.shape != live.shape or not same:
                return f"{key}: the live variable does not hold the value saved"
        for key, resource in self.resources.items():
            tensors = resource._serialize_to_tensors()
            if set(tensors) == {"-keys", "-values"}:
                contents = as_mapping(tensors["-keys"].numpy(), tensors["-values"].numpy())
                if contents != as_mapping(read(key + "-keys"), read(key + "-values")):
                    return f"{key}: the live table does not hold the contents saved"
                continue
            for name, tensor in tensors.items():
                if not np.array_equal(read(key + name), tensor.numpy()):
                    return f"{key + name}: the live object does not hold the value saved"
        return None


def saved_objects(module: Any, serialized_graph: bytes) -> tuple[Optional[SavedObjects], Optional[str]]:
    """(`SavedObjects`, None), or (None, why not): each saved value's object found from `module` by the child names
    of its path in the checkpoint's object graph (a version's values matched to a live module: the next versions
    of a run, a version read back into a rebuilt model).

    Args:
        module: the live served module (the root the version was saved from).
        serialized_graph: the checkpoint's object graph (`reader.get_tensor(OBJECT_GRAPH_KEY)`).

    Example:

    ```python
    objects, problem = saved_objects(module, reader.get_tensor(OBJECT_GRAPH_KEY))
    ```
    """
    import keras
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(serialized_graph)
    live, problem = _live_nodes(module, graph)
    if problem is not None:
        return None, problem
    variables: dict[str, Any] = {}
    resources: dict[str, Any] = {}
    keys_of: dict[int, str] = {}
    for node_id, node in enumerate(graph.nodes):
        for attribute in node.attributes:
            found = live[node_id]
            if id(found) in keys_of:
                return None, f"{attribute.checkpoint_key} and {keys_of[id(found)]} map to one object"
            if attribute.name == _VARIABLE_VALUE and isinstance(found, (tf.Variable, keras.Variable)):
                variables[attribute.checkpoint_key] = found
            elif _checkpointed_by_protocol(found):
                resources[attribute.checkpoint_key] = found
            else:
                return None, (f"{attribute.checkpoint_key}: expected a variable or an object saved by TensorFlow's "
                              f"checkpoint protocol, got {type(found).__name__}")
            keys_of[id(found)] = attribute.checkpoint_key
    return SavedObjects(variables, resources), None


def _live_nodes(module: Any, graph: Any) -> tuple[dict[int, Any], Optional[str]]:
    """({node id: live object}, None) for each node of the checkpoint's object graph on a path to a saved value, or
    ({}, why not): the graph walked once, breadth first as the saver named it, each live object's children listed
    once (`saved_children`), so a model of thousands of variables costs one listing per object, not one per prefix of
    every variable's path."""
    wanted = _nodes_leading_to_attributes(graph)
    live: dict[int, Any] = {0: module}
    queue = collections.deque([0])
    while queue:
        node = queue.popleft()
        listed: Optional[dict[str, Any]] = None
        for child in graph.nodes[node].children:
            if child.node_id in live or child.node_id not in wanted:
                continue
            listed = saved_children(live[node]) if listed is None else listed
            found = listed.get(child.local_name)
            if found is None:  # a child the saver found by attribute (a function's): listed the saver's way
                listed = saved_children(live[node], with_functions=True)
                found = listed.get(child.local_name)
            if found is None:
                key = next((attribute.checkpoint_key for attribute in _attributes_under(graph, child.node_id)), "")
                return {}, f"{key}: no child {child.local_name!r} in the live module"
            live[child.node_id] = found
            queue.append(child.node_id)
    return live, None


def _nodes_leading_to_attributes(graph: Any) -> set[int]:
    """The ids of the object graph's nodes that hold a saved value or lead to one (a function's or an optimizer's
    nodes without values are left unwalked)."""
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for node_id, node in enumerate(graph.nodes):
        for child in node.children:
            parents[child.node_id].append(node_id)
    wanted = {node_id for node_id, node in enumerate(graph.nodes) if node.attributes}
    queue = collections.deque(wanted)
    while queue:
        for parent in parents[queue.popleft()]:
            if parent not in wanted:
                wanted.add(parent)
                queue.append(parent)
    return wanted


def _attributes_under(graph: Any, node_id: int) -> Iterator[Any]:
    """The saved attributes of `node_id` and of the nodes under it, breadth first (to name a missing child by a
    checkpoint key)."""
    seen = {node_id}
    queue = collections.deque([node_id])
    while queue:
        node = graph.nodes[queue.popleft()]
        yield from node.attributes
        for child in node.children:
            if child.node_id not in seen:
                seen.add(child.node_id)
                queue.append(child.node_id)


def _checkpointed_by_protocol(found: Any) -> bool:
    """True for an object TensorFlow checkpoints through its own `_serialize_to_tensors` / `_restore_from_tensors`
    (a mutable lookup table): the base class' methods only raise."""
    import tensorflow as tf

    base = tf.__internal__.tracking.Trackable
    return all(getattr(type(found), method, None) not in (None, getattr(base, method))
               for method in ("_serialize_to_tensors", "_restore_from_tensors"))


def restore_version(folder: "str | Path", module: Any, model: Any) -> None:
    """Reads the version at `folder` into the live `module` (the rebuilt model's served module, traced) and its
    `model`: the weights from the version's Keras weights file by Keras' own walk (`keras_weights.py`), or, in a
    version written before that file, through the checkpoint's object graph (every weight of `model` must be in the
    version with its shape); the variables Keras' file does not hold (a served module's own) from the checkpoint;
    then the checkpointed resources restored, and each static lookup table made the version's (a Keras lookup
    layer's vocabulary) or refused.

    Args:
        folder: the version's SavedModel folder (checked whole by the caller).
        module: the served module of `model`, built as the exporter builds it and traced.
        model: the rebuilt Keras model, whose weights are checked (the first that differs is named).
    Raises:
        VersionMismatch: the version cannot be read, or does not fit the model (the message names the first weight,
            object or table that differs, and what to do).

    Example:

    ```python
    module = served_module(settings, model)
    module.served_model.get_concrete_function()
    restore_version(experiment.export_dir / "3", module, model)
    ```
    """
    import tensorflow as tf

    from experiments_manager.export.keras_weights import has_weights_file, read_weights_file

    folder = Path(folder)
    try:
        reader = tf.train.load_checkpoint(str(folder / VARIABLES_PREFIX))
        graph = reader.get_tensor(OBJECT_GRAPH_KEY)
    except Exception as error:  # noqa: BLE001 - a damaged or foreign SavedModel: said in one line
        raise VersionMismatch(f"expected a readable SavedModel version, got: {type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}") from None
    keras_file = has_weights_file(folder)
    objects, problem = saved_objects(module, graph)
    if objects is None and (not keras_file or _holds_resources(graph)):
        raise VersionMismatch("expected the new model's architecture, got weights it does not have: "
                              + cast(str, problem).replace("/.ATTRIBUTES/VARIABLE_VALUE", ""))
    differing = tables_differing(folder, module)
    for table in differing:
        table.use_version_vocabulary()  # a Keras lookup layer gets the version's vocabulary; another table is refused
    if keras_file:
        try:
            read_weights_file(folder, model)
        except VersionMismatch as error:
            if differing:  # the vocabulary is the cause (not another architecture: no block of it is matched)
                raise VersionMismatch(f"{error}{_vocabulary_cause(differing)}") from None
            raise
    else:
        _check_weights_by_object_graph(cast(SavedObjects, objects), reader, model, differing)
    resources = objects.resources if objects is not None else {}
    for key, resource in resources.items():
        names = list(resource._serialize_to_tensors())
        missing = [key + name for name in names if not reader.has_tensor(key + name)]
        if missing:
            raise VersionMismatch(f"{_object_path(key)}: expected its saved contents, got none ({missing[0]})")
    weights = {id(variable) for variable in model.weights} if keras_file else set()
    for key, variable in (objects.variables.items() if objects is not None else ()):
        if id(variable) not in weights:  # every variable, or those Keras' file does not hold (a served module's own)
            variable.assign(reader.get_tensor(key))
    for key, resource in resources.items():
        resource._restore_from_tensors({name: tf.constant(reader.get_tensor(key + name))
                                        for name in resource._serialize_to_tensors()})
    if not keras_file:
        _keras_load_steps(model)  # Keras' load_weights ran them


def _check_weights_by_object_graph(objects: SavedObjects, reader: Any, model: Any, differing: list[Any]) -> None:
    """A version written before the Keras weights file: every weight of `model`, in its order, found in the
    checkpoint through the object graph, with its shape."""
    shapes = reader.get_variable_to_shape_map()
    key_of = {id(variable): key for key, variable in objects.variables.items()}
    for variable in model.weights:  # in the model's order: the first layer that differs is named
        name = getattr(variable, "path", None) or variable.name
        key = key_of.get(id(variable))
        if key is None:
            raise VersionMismatch(f"expected weights for every weight of the new model, got none for {name}")
        if tuple(shapes[key]) != tuple(variable.shape):
            raise VersionMismatch(f"{name}: expected the new model's shape {tuple(variable.shape)}, got "
                                  f"{tuple(shapes[key])}{_vocabulary_cause(differing)}")


def _vocabulary_cause(differing: list[Any]) -> str:
    """Why a layer's shape may differ: the model file built a lookup layer with another vocabulary."""
    return "" if not differing else (
        f" (the model file builds {differing[0].layer_name} with another vocabulary than the version's: a "
        "layer sized by it differs; give the lookup layer a fixed vocabulary or size the layers by max_tokens)")


def _holds_resources(serialized_graph: bytes) -> bool:
    """True when a checkpoint saves an object other than a variable (a mutable lookup table's contents)."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(serialized_graph)
    return any(attribute.name != _VARIABLE_VALUE for node in graph.nodes for attribute in node.attributes)


def _keras_load_steps(model: Any) -> None:
    """Keras' own per-layer load step for the layers that derive state from their variables once loaded (an adapted
    `Normalization` makes its mean and variance tensors from them): their `load_own_variables`, given the values just
    assigned (as their `save_own_variables` lists them), as Keras' own loading calls it."""
    import keras

    base = keras.layers.Layer.load_own_variables
    flatten = getattr(model, "_flatten_layers", None)
    layers = flatten(include_self=False, recursive=True) if flatten else getattr(model, "layers", [])
    for layer in layers:
        if getattr(type(layer), "load_own_variables", base) is not base:
            store: dict[str, Any] = {}
            layer.save_own_variables(store)
            layer.load_own_variables(store)


def _object_path(checkpoint_key: str) -> str:
    return checkpoint_key.split(_ATTRIBUTES)[0]
