"""A version's static lookup tables (vocabularies) compared with those of a model its model file rebuilt.

A static lookup table (`tf.lookup.StaticHashTable`: the vocabulary of `TextVectorization`, `StringLookup`,
`IntegerLookup`, or a table a custom layer builds) is not in a version's checkpoint: its contents are in the
SavedModel's graph, and a rebuilt model holds what its model file builds, the same only when it adapts on the same
data. `tables_differing` finds, by the child names of their paths, the tables of a live module whose contents differ
from the version's (the SavedModel loaded only when the module has such tables); `use_version_vocabulary` then gives a
Keras lookup layer the version's vocabulary (`set_vocabulary`, tokens in index order) and refuses any other table in
one line naming its path. `saved_state.restore_version` calls both.

Example:

```python
for table in tables_differing("exported_models/3", module):
    table.use_version_vocabulary()
```
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Any, Iterator

import numpy as np


class VersionMismatch(Exception):
    """A version's saved state does not fit the live module; the message says the first thing that differs."""


def as_mapping(keys: np.ndarray, values: np.ndarray) -> dict[Any, Any]:
    """A table's contents (its keys and values as `export` gives them, in the hash table's order) as a dict."""
    return {_hashable(key): _hashable(value) for key, value in zip(keys, values)}


def _hashable(value: Any) -> Any:
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tobytes() + str(array.shape).encode()


def saved_children(found: Any, with_functions: bool = False) -> dict[str, Any]:
    """The children of `found` as a SavedModel's object graph names them (what its `variables/` checkpoint is
    keyed by): Keras lists a layer's tracked lists there (a Sequential model's `_layers`) where a plain checkpoint
    lists its inner functional model; plain lists and dicts wrapped as the saver wraps them.

    Args:
        found: a live object of the module.
        with_functions: also list a Keras layer's `tf.function`s as the saver does (default False). The saver
            finds them by reading every attribute of the layer and traces each, which on a functional model re-traces
            the whole model: seconds per layer on a `keras.applications` backbone. They hold no saved value, so the
            walks to a checkpoint's values leave them out and ask for them only where a path names one.
    """
    import tensorflow as tf
    from tensorflow.python.trackable import data_structures

    import keras

    if not isinstance(found, tf.__internal__.tracking.Trackable):
        return {}  # a constant a function captured, say: nothing saved under it
    if not isinstance(found, keras.layers.Layer):  # TensorFlow's own objects list the same children either way
        return dict(tf.train.TrackableView.children(found))
    listed = (found._trackable_children(save_type="savedmodel") if with_functions
              else layer_children_without_functions(found))
    children = {name: data_structures.wrap_or_unwrap(child) for name, child in listed.items()}
    return {name: child for name, child in children.items() if isinstance(child, tf.__internal__.tracking.Trackable)}


def layer_children_without_functions(layer: Any) -> dict[str, Any]:
    """What a Keras layer lists as its children for a SavedModel, less the `tf.function`s the saver finds by reading
    every attribute (AutoTrackable's dependencies, then Keras' tracked collections made plain, as Keras lists them):
    the listing `saved_children` walks and `lean_save` saves."""
    from tensorflow.python.types import core as core_types

    functions = (core_types.PolymorphicFunction, core_types.ConcreteFunction)
    listed = {reference.name: reference.ref for reference in layer._checkpoint_dependencies
              if not isinstance(reference.ref, functions)}
    convert = getattr(layer, "_convert_tracked_collections", None)
    if convert is not None and hasattr(layer, "_tracked"):
        convert(listed)
    return listed


def saved_child(found: Any, name: str) -> Any:
    """The child `name` of `found` as the saver names it, or None: looked up among its children without functions
    first, with them only when the name is not there (`saved_children`)."""
    children = saved_children(found)
    if name in children:
        return children[name]
    return saved_children(found, with_functions=True).get(name)


def static_tables(root: Any) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, table) of each static lookup table reachable from `root`, breadth first by child names (the paths of
    the checkpoint's and the SavedModel's object graphs)."""
    import tensorflow as tf
    from tensorflow.python.ops.lookup_ops import InitializableLookupTableBase

    seen = {id(root)}
    queue: collections.deque[tuple[tuple[str, ...], Any]] = collections.deque([((), root)])
    while queue:
        path, found = queue.popleft()
        if isinstance(found, InitializableLookupTableBase):
            yield path, found
            continue
        for name, child in saved_children(found).items():
            if id(child) not in seen:
                seen.add(id(child))
                queue.append((path + (name,), child))


@dataclasses.dataclass
class _DifferingTable:
    """A static lookup table of the live module whose contents differ from the version's.

    Args:
        path: its path from the module (child names).
        owner: the object holding it (a Keras lookup layer, or another).
        table: the live table.
        keys: the version's table's keys; `values`: its values.
    """

    path: tuple[str, ...]
    owner: Any
    table: Any
    keys: np.ndarray
    values: np.ndarray

    @property
    def where(self) -> str:
        return "/".join(self.path)

    @property
    def layer_name(self) -> str:
        name = getattr(self.owner, "name", None)
        return f"layer {name!r}" if isinstance(name, str) else self.where

    def use_version_vocabulary(self) -> None:
        """Gives a Keras lookup layer the version's vocabulary; refuses any other table."""
        wanted = as_mapping(self.keys, self.values)
        if not _is_keras_lookup_layer(self.owner, self.table):
            raise VersionMismatch(
                f"{self.where}: expected the lookup table the model file builds to hold what the version's holds, "
                f"got different contents ({len(wanted)} entries saved): build it from a fixed vocabulary (a file or "
                "list the model file reads) so that the run can be rebuilt")
        _set_vocabulary_of(self.owner, self.keys, self.values, self.where)
        if as_mapping(*(tensor.numpy() for tensor in self.owner.lookup_table.export())) != wanted:
            raise VersionMismatch(f"{self.where}: expected the version's vocabulary once set on {self.layer_name}, "
                                  "got different contents")


def tables_differing(folder: Path, module: Any) -> list[_DifferingTable]:
    """The static lookup tables of `module` whose contents differ from the version's, compared by path (the
    SavedModel loaded only when the module has such tables)."""
    import tensorflow as tf

    tables = list(static_tables(module))
    if not tables:
        return []
    saved_root = tf.saved_model.load(str(folder))
    differing = []
    for path, table in tables:
        saved = _child_at(saved_root, path)
        if saved is None:
            raise VersionMismatch(f"{'/'.join(path)}: expected the version to hold this lookup table, got none at "
                                  "that path")
        keys, values = tf.raw_ops.LookupTableExportV2(table_handle=saved.resource_handle, Tkeys=table.key_dtype,
                                                      Tvalues=table.value_dtype)
        keys, values = keys.numpy(), values.numpy()
        if as_mapping(*(tensor.numpy() for tensor in table.export())) != as_mapping(keys, values):
            differing.append(_DifferingTable(path, _child_at(module, path[:-1]), table, keys, values))
    return differing


def _child_at(root: Any, path: tuple[str, ...]) -> Any:
    found = root
    for name in path:
        found = saved_child(found, name)
        if found is None:
            return None
    return found


def _is_keras_lookup_layer(owner: Any, table: Any) -> bool:
    try:
        from keras.src.layers.preprocessing.index_lookup import IndexLookup
    except ImportError:  # another Keras layout: any differing table is refused
        return False
    return isinstance(owner, IndexLookup) and getattr(owner, "lookup_table", None) is table


def _set_vocabulary_of(layer: Any, keys: np.ndarray, values: np.ndarray, where: str) -> None:
    """Gives the Keras lookup `layer` the vocabulary of the saved table (its tokens in index order; an inverted
    layer's table maps indices to tokens)."""
    indices, tokens = (keys, values) if layer.invert else (values, keys)
    order = np.argsort(indices, kind="stable")
    start = layer._token_start_index()
    if not np.array_equal(np.asarray(indices)[order], np.arange(start, start + len(order))):
        raise VersionMismatch(f"{where}: expected the version's vocabulary to number its tokens from {start} on, got "
                              "other indices: build the layer from a fixed vocabulary")
    if layer.output_mode == "tf_idf":  # its idf weights are a variable of their own, made anew by set_vocabulary
        raise VersionMismatch(f"{where}: expected the vocabulary the model file builds for layer {layer.name!r} "
                              "(output_mode 'tf_idf'), got another: build it from a fixed vocabulary and idf weights")
    layer._frozen_vocab_size = None  # the rebuilt one's size may differ; the version's is the one to keep
    layer.set_vocabulary([_token(token) for token in np.asarray(tokens)[order]])


def _token(token: Any) -> Any:
    """A saved table's key as Keras' own vocabularies hold it: text as `str`, numbers as Python numbers (bytes that
    are not UTF-8 stay bytes)."""
    if isinstance(token, bytes):
        try:
            return token.decode("utf-8")
        except UnicodeDecodeError:
            return bytes(token)
    return token.item() if isinstance(token, np.generic) else token
