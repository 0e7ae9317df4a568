"""A SavedModel's graph written once; the later versions of a run from new variable values only.

`tf.saved_model.save` traces the served function and the savers and builds the meta graph at every call (0.3 to
0.8 s for the regression example), although between two versions of one run only the values of the variables
change. So the first version of a run is a full `tf.saved_model.save`, and `SavedModelTemplate` keeps what the
next ones share with it: `saved_model.pb` and `assets/` (bytes), and the checkpoint keys of `variables/`, each
mapped to the live variable it was saved from (by walking the checkpoint's object graph from the served module,
the way `tf.saved_model.load` matches it). A later version is those files again, plus a `variables/` checkpoint
that TensorFlow's own `SaveV2` op writes from a snapshot of the values (numpy copies) under the same keys, with
the same object graph; `fingerprint.pb` is then computed as `tf.saved_model.save` computes it. TF Serving's
restore op reads the variables by those keys, `tf.saved_model.load` by that object graph: both see the new values.

The template is only kept when every saved value is a variable of the module or an object TensorFlow checkpoints
through its own protocol (a mutable lookup table: its keys and values are snapshot as its `export` gives them),
each key maps to its own object (`saved_state.saved_objects`), and the mapping gives back, value for value, what
`tf.saved_model.save` just wrote (in a new run, the initial values of the check's save: a value check cannot tell
apart two keys of one shape whose values are equal, a layer's zero biases say; the keys come from the object graph,
and the trained values of a resume's first version check them again);
otherwise (`SavedModelTemplate.read` returns None) every version is a full save, which only costs time. The graph
is the live module's: what the served function captured when it was traced (an adapted layer's statistics, a
static lookup table's vocabulary, a setting its config omits, the mixed-precision policy) is in it as the full save
wrote it.
"""

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from experiments_manager.export.saved_state import OBJECT_GRAPH_KEY, VARIABLES_PREFIX, SavedObjects, saved_objects

if TYPE_CHECKING:
    import numpy.typing as npt

_LOG = logging.getLogger(__name__)
FULL_SAVES_ADVICE = ("each version is written whole on the training thread: the same files, only slower; nothing to "
                     "do unless exports slow training (then save_only_last_best_model = True exports only on "
                     "improvement)")
_NOT_COPIED = ("variables", "fingerprint.pb")  # written anew for each version


class SavedModelTemplate:
    """Writes SavedModel versions that share a first version's graph, from snapshots of the variables' values.

    Build it with `SavedModelTemplate.read` right after the first version was saved, while the module's variables
    still hold the values saved. Take `snapshot()` on the thread that trains (it copies the values), then
    `write(folder, values)` anywhere (another thread: it touches no live variable, no model, no Keras object).

    Args:
        files: relative path -> bytes of the files every version shares (`saved_model.pb`, assets).
        folders: relative paths of the folders every version has (`assets/`, even empty).
        objects: the live objects saved (variables, checkpointed resources), by checkpoint key.
        object_graph: the checkpoint's serialized object graph (bytes).
        dtypes: checkpoint key -> the dtype saved under it.

    Example:

    ```python
    tf.saved_model.save(module, "exported_models/1", signatures=signatures)
    template = SavedModelTemplate.read("exported_models/1", module)
    values = template.snapshot()                     # at the end of a later epoch
    template.write("exported_models/.tmp-2-123", values)
    ```
    """

    def __init__(self, files: dict[str, bytes], folders: list[str], objects: SavedObjects, object_graph: bytes,
                 dtypes: dict[str, Any]) -> None:
        self.files = files
        self.folders = folders
        self.objects = objects
        self.object_graph = object_graph
        self.dtypes = dtypes

    @classmethod
    def read(cls, folder: "str | Path", module: Any) -> "Optional[SavedModelTemplate]":
        """The template of the SavedModel at `folder`, saved from `module`; None when it cannot be one.

        Args:
            folder: a SavedModel just written by `tf.saved_model.save(module, ...)`.
            module: the saved `tf.Module`, its variables still holding the values saved.

        Returns:
            the template, or None (logged, with the reason) when every version must be a full save.

        Example:

        ```python
        with ema_weights_swapped_in(model, model.optimizer):
            tf.saved_model.save(module, "exported_models/1", signatures=signatures)
            template = SavedModelTemplate.read("exported_models/1", module)
        ```
        """
        import tensorflow as tf

        folder = Path(folder)
        try:
            reader = tf.train.load_checkpoint(str(folder / VARIABLES_PREFIX))
            object_graph = reader.get_tensor(OBJECT_GRAPH_KEY)
            objects, problem = saved_objects(module, object_graph)
            if objects is not None:
                saved_keys = set(reader.get_variable_to_shape_map()) - {OBJECT_GRAPH_KEY}
                problem = objects.first_difference(reader.get_tensor, saved_keys)
        except Exception as error:  # a SavedModel this reading does not foresee: full saves, as without a template
            problem = f"{type(error).__name__}: {error}"
        if problem is not None:
            _LOG.info("Every version is a full SavedModel save: %s; %s", FULL_SAVES_ADVICE, problem)
            return None
        files, folders = {}, []
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            if relative.split("/")[0] in _NOT_COPIED:
                continue
            if path.is_dir():
                folders.append(relative)
            else:
                files[relative] = path.read_bytes()
        dtypes = reader.get_variable_to_dtype_map()
        assert objects is not None  # no problem: `saved_objects` found them
        return cls(files, folders, objects, object_graph, {key: dtypes[key] for key in objects.tensor_keys()})

    def snapshot(self) -> "dict[str, npt.NDArray[Any]]":
        """Copies of the values the variables of the key map hold now (on the thread that updates them).

        Returns:
            checkpoint key -> numpy array (a copy: the variables may change at once).

        Example:

        ```python
        with ema_weights_swapped_in(model, model.optimizer):
            values = template.snapshot()
        ```
        """
        return self.objects.snapshot()

    def write(self, folder: "str | Path", values: "dict[str, npt.NDArray[Any]]") -> None:
        """Writes a complete SavedModel into `folder` with `values` as its variables: the first version's files,
        a `variables/` checkpoint written by `SaveV2` from the numpy arrays under their keys with the first
        version's object graph, then `fingerprint.pb`. Touches no live variable: any thread may call it.

        Args:
            folder: the folder to create (it must not exist).
            values: a `snapshot()`.

        Example:

        ```python
        template.write("exported_models/.tmp-2-123", values)   # then renamed exported_models/2
        ```
        """
        import tensorflow as tf
        from tensorflow.python.saved_model import fingerprinting_utils  # what tf.saved_model.save calls last

        folder = Path(folder)
        (folder / "variables").mkdir(parents=True)
        for relative in self.folders:
            (folder / relative).mkdir(parents=True, exist_ok=True)
        keys = sorted(values)
        with tf.device("/CPU:0"):
            tf.raw_ops.SaveV2(prefix=str(folder / VARIABLES_PREFIX), tensor_names=keys + [OBJECT_GRAPH_KEY],
                              shape_and_slices=[""] * (len(keys) + 1),
                              tensors=[tf.constant(values[key], dtype=self.dtypes[key]) for key in keys]
                              + [tf.constant(self.object_graph)])
        for relative, content in self.files.items():  # saved_model.pb last, as tf.saved_model.save does
            if relative != "saved_model.pb":
                (folder / relative).write_bytes(content)
        (folder / "saved_model.pb").write_bytes(self.files["saved_model.pb"])
        fingerprinting_utils.write_fingerprint(str(folder))
