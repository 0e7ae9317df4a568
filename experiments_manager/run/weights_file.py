"""A model's Keras weights file (`model.save_weights`' `.weights.h5`), made in memory: what a checkpoint holds and
what each version holds beside its SavedModel (`export/keras_weights.py`).

Keras makes the file by walking the model (its `_save_state`), each layer writing its variables into the
file's groups: for ResNet50, about a second on the training thread, at every epoch's checkpoint and every version.
`WeightsFileMaker` records that walk once (the groups, their metadata, and which variable fills each dataset); then a
copy of the variables' values is all the training thread takes (`copy`), and the file's bytes are made from the copy
later, on any thread (`WeightsCopy.file_bytes`, the checkpoint's and the export's background writers): the same
groups and datasets in the same order, written by Keras' own `H5IOStore`. The walk is made again when the model's
variables are not those recorded (a layer built since), and every time when an entry is not a variable (a layer
that writes a value it computes: the walk is the only way to get it right).

Example:

```python
maker = WeightsFileMaker(model, left_out=lambda: [model.optimizer])
copy = maker.copy()              # on the training thread: values copied
data = copy.file_bytes()         # anywhere later: what model.save_weights would have written then
```
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np


def left_out_of_weights_file(model: Any) -> list[Any]:
    """What the weights file leaves out: the model's optimizer (`optimizer.npz` holds its variables). Keras walks
    it otherwise, and its slots and EMA averages are three times the weights (a checkpoint 20 ms slower, for an
    MLP, and four times the bytes)."""
    optimizer = getattr(model, "optimizer", None)
    return [] if optimizer is None else [optimizer]


def weights_file_bytes(model: Any, left_out: "list[Any] | None" = None) -> bytes | memoryview:
    """What `model.save_weights("model.weights.h5")` writes, without the optimizer (`left_out_of_weights_file`, or
    the objects `left_out`: a version leaves every optimizer out), made in memory:
    a full disk then fails the plain file write that follows (an OSError), never HDF5 mid-file (which leaves it
    unable to close, and the process segfaulting at exit). Keras writes the same file with the same `H5IOStore` in
    `save_weights_only`, and reads it back with `load_weights(objects_to_skip=...)`."""
    try:
        from keras.src.saving import saving_lib

        _remember_attribute_skipsets(saving_lib)
        buffer = io.BytesIO()
        store = saving_lib.H5IOStore(buffer, mode="w")
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="",
                               visited_saveables={id(item) for item in (left_out_of_weights_file(model)
                                                                        if left_out is None else left_out)})
        store.close()
        return buffer.getbuffer()
    except (ImportError, AttributeError, TypeError):  # a Keras without these: its public way, through a file
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder, "model.weights.h5")
            model.save_weights(str(path))
            return path.read_bytes()


class WeightsCopy:
    """A weights file's content copied from a model (the values of the variables a recorded walk writes), its bytes
    made when asked.

    Args:
        entries: the recorded walk (`WeightsFileMaker`): (path, metadata, [(key, index into `values`), ...]).
        values: the copied values, in the walk's order.
    """

    def __init__(self, entries: list[_Entry], values: list[np.ndarray[Any, Any]]) -> None:
        self.entries = entries
        self.values = values

    def file_bytes(self) -> memoryview:
        """The file's bytes: Keras' `H5IOStore` filled as the walk filled it, from the copies."""
        from keras.src.saving import saving_lib

        buffer = io.BytesIO()
        store = saving_lib.H5IOStore(buffer, mode="w")
        for path, metadata, datasets in self.entries:
            store.make(path, metadata=metadata)
            for key, index in datasets:
                store[key] = self.values[index]
        store.close()
        return buffer.getbuffer()


WeightsContent = Union[bytes, memoryview, WeightsCopy]  # a weights file's content: its bytes, or a copy to make them


def content_bytes(content: WeightsContent) -> bytes | memoryview:
    """The bytes of a weights file's content (made now from a `WeightsCopy`)."""
    return content.file_bytes() if isinstance(content, WeightsCopy) else content


_Entry = tuple[str, Optional[dict[str, Any]], list[tuple[str, int]]]  # (path, metadata, [(key, variable index)])


class WeightsFileMaker:
    """Makes a model's weights file content as Keras' `save_weights` would write it now, the walk recorded once.

    Args:
        model: the built Keras model.
        left_out: function returning the objects the file leaves out (the optimizers), asked at each walk.
    """

    def __init__(self, model: Any, left_out: Callable[[], list[Any]]) -> None:
        self.model = model
        self.left_out = left_out
        self._entries: Optional[list[_Entry]] = None
        self._variables: list[Any] = []
        self._recorded_for: tuple[int, ...] = ()  # the ids of the model's variables the walk was recorded for
        self._walk_every_time = False

    def copy(self) -> WeightsContent:
        """The file's content now: a `WeightsCopy` of the recorded variables (cheap, on the thread that trains), or
        the bytes of a new walk when the recorded one cannot be reused."""
        import keras

        current = tuple(map(id, self.model.variables))
        if not self._walk_every_time and (self._entries is None or current != self._recorded_for):
            self._record()
            self._recorded_for = current
        if self._walk_every_time or self._entries is None:
            return weights_file_bytes(self.model, left_out=self.left_out())
        # copies (`np.array`): training moves the variables on at its next step
        values = [np.array(keras.ops.convert_to_numpy(variable)) for variable in self._variables]
        return WeightsCopy(self._entries, values)

    def _record(self) -> None:
        """Walks the model as `save_weights` does, into a store that records instead of writing."""
        import keras
        from keras.src.saving import saving_lib

        _remember_attribute_skipsets(saving_lib)

        class Recording(saving_lib.H5IOStore):  # `_save_state` takes only Keras' stores
            def __init__(self) -> None:  # (no file)
                self.mode = "w"
                self.entries: list[tuple[str, Optional[dict[str, Any]], list[tuple[str, Any]]]] = []

            def __bool__(self) -> bool:
                return True

            def make(self, path: str, metadata: Optional[dict[str, Any]] = None) -> "Recording":
                self.entries.append((path, dict(metadata) if metadata else None, []))
                return self

            def __setitem__(self, key: str, value: Any) -> None:
                self.entries[-1][2].append((key, value))

            def close(self) -> None:
                pass

        store = Recording()
        try:
            saving_lib._save_state(self.model, weights_store=store, assets_store=None, inner_path="",
                                   visited_saveables={id(item) for item in self.left_out()})
        except Exception:  # noqa: BLE001 - a layer that needs the real store: the walk each time
            self._walk_every_time = True
            return
        values = [value for _, _, datasets in store.entries for _, value in datasets]
        if not all(isinstance(value, keras.Variable) for value in values):  # a value computed at save time
            self._walk_every_time = True
            return
        self._variables, entries, index = values, [], 0
        for path, metadata, datasets in store.entries:
            entries.append((path, metadata, [(key, index + offset) for offset, (key, _) in enumerate(datasets)]))
            index += len(datasets)
        self._entries = entries


_SAVEABLE_TYPES = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")


def _remember_attribute_skipsets(saving_lib: Any) -> None:
    """Fills the cache Keras' walk of a model looks in (Keras keeps it per thread): Keras 3 (3.15 at least) stores each
    object type's attribute skip set under `saving_attr_skipset_<type>` but looks for `saving_attr_skiplist_<type>`,
    so every save builds throw-away `Layer`, `Optimizer` and `Metric` objects again (a third of a checkpoint's
    time on the training thread, for an MLP). The values are the ones Keras computes; a Keras that fixed the key
    finds its own cache, and this does nothing."""
    from keras.src.backend.common import global_state

    for obj_type in _SAVEABLE_TYPES:
        looked_for = f"saving_attr_skiplist_{obj_type}"
        if global_state.get_global_attribute(looked_for) is None:
            stored = global_state.get_global_attribute(f"saving_attr_skipset_{obj_type}")
            if stored is None:
                stored = saving_lib.get_attr_skipset(obj_type)
            global_state.set_global_attribute(looked_for, stored)
