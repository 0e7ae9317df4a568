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

The template is only kept when every saved value is a plain variable of the module, each key maps to its own
variable, and the mapping gives back, value for value, what `tf.saved_model.save` just wrote (in a run: the
trained EMA weights of the first version, not initial values); otherwise (`SavedModelTemplate.read` returns None)
every version is a full save. The graph is the live module's: what the served function captured when it was
traced (an adapted layer's statistics, a setting its config omits, the mixed-precision policy) is in it as the
full save wrote it. A lookup table's contents, when the checkpoint holds them, make `read` return None.
"""

import collections
import logging
from pathlib import Path

import numpy as np

_LOG = logging.getLogger(__name__)
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"  # the checkpoint's own key for its object graph
VARIABLES_PREFIX = "variables/variables"  # a SavedModel's checkpoint, under its folder
_NOT_COPIED = ("variables", "fingerprint.pb")  # written anew for each version


class SavedModelTemplate:
    """Writes SavedModel versions that share a first version's graph, from snapshots of the variables' values.

    Build it with `SavedModelTemplate.read` right after the first version was saved, while the module's variables
    still hold the values saved. Take `snapshot()` on the thread that trains (it copies the values), then
    `write(folder, values)` anywhere (another thread: it touches no live variable, no model, no Keras object).

    Args:
        files: relative path -> bytes of the files every version shares (`saved_model.pb`, assets).
        folders: relative paths of the folders every version has (`assets/`, even empty).
        variables: checkpoint key -> the live variable saved under it.
        object_graph: the checkpoint's serialized object graph (bytes).

    Example:

    ```python
    tf.saved_model.save(module, "exported_models/1", signatures=signatures)
    template = SavedModelTemplate.read("exported_models/1", module)
    values = template.snapshot()                     # at the end of a later epoch
    template.write("exported_models/.tmp-2-123", values)
    ```
    """

    def __init__(self, files, folders, variables, object_graph):
        self.files = files
        self.folders = folders
        self.variables = variables
        self.object_graph = object_graph

    @classmethod
    def read(cls, folder, module):
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
            variables, problem = variables_by_key(module, object_graph)
            if problem is None:
                problem = _first_difference(variables, reader)
        except Exception as error:  # a SavedModel this reading does not foresee: full saves, as without a template
            problem = f"{type(error).__name__}: {error}"
        if problem is not None:
            _LOG.info("Every version is a full SavedModel save: %s", problem)
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
        return cls(files, folders, variables, object_graph)

    def snapshot(self):
        """Copies of the values the variables of the key map hold now (on the thread that updates them).

        Returns:
            checkpoint key -> numpy array (a copy: the variables may change at once).

        Example:

        ```python
        with ema_weights_swapped_in(model, model.optimizer):
            values = template.snapshot()
        ```
        """
        return {key: np.array(variable.numpy(), copy=True) for key, variable in self.variables.items()}

    def write(self, folder, values):
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
                              tensors=[values[key] for key in keys] + [tf.constant(self.object_graph)])
        for relative, content in self.files.items():  # saved_model.pb last, as tf.saved_model.save does
            if relative != "saved_model.pb":
                (folder / relative).write_bytes(content)
        (folder / "saved_model.pb").write_bytes(self.files["saved_model.pb"])
        fingerprinting_utils.write_fingerprint(str(folder))


def variables_by_key(module, serialized_graph):
    """(checkpoint key -> live variable, None), or (None, why not): each saved value's object found from `module`
    by the child names of its path in the checkpoint's object graph (a version's variables matched to a live
    module: the next versions of a run, and a fine-tuned run's initial weights).

    Example:

    ```python
    reader = tf.train.load_checkpoint("exported_models/3/variables/variables")
    variables, problem = variables_by_key(module, reader.get_tensor(OBJECT_GRAPH_KEY))
    ```
    """
    import keras
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(serialized_graph)
    paths, queue = {0: ()}, collections.deque([0])
    while queue:  # breadth first, as the saver names them
        node = queue.popleft()
        for child in graph.nodes[node].children:
            if child.node_id not in paths:
                paths[child.node_id] = paths[node] + (child.local_name,)
                queue.append(child.node_id)
    variables, keys_of = {}, {}
    for node_id, node in enumerate(graph.nodes):
        for attribute in node.attributes:
            found = module
            for name in paths.get(node_id, ()):
                children = tf.train.TrackableView.children(found)
                if name not in children:
                    return None, f"{attribute.checkpoint_key}: no child {name!r} in the live module"
                found = children[name]
            if attribute.name != "VARIABLE_VALUE" or not isinstance(found, (tf.Variable, keras.Variable)):
                return None, f"{attribute.checkpoint_key} is not a plain variable ({type(found).__name__})"
            if id(found) in keys_of:
                return None, f"{attribute.checkpoint_key} and {keys_of[id(found)]} map to one variable"
            keys_of[id(found)] = attribute.checkpoint_key
            variables[attribute.checkpoint_key] = found
    return variables, None


def _first_difference(variables, reader):
    """None when every variable holds, in shape, dtype and value, what the checkpoint `reader` holds; else why not."""
    saved_keys = set(reader.get_variable_to_shape_map()) - {OBJECT_GRAPH_KEY}
    if saved_keys != set(variables):
        return f"the checkpoint's keys and the mapped variables differ: {sorted(saved_keys ^ set(variables))[:3]}"
    for key, variable in variables.items():
        saved, live = reader.get_tensor(key), np.asarray(variable.numpy())
        same = np.array_equal(saved, live, equal_nan=saved.dtype.kind in "fc")
        if saved.dtype != live.dtype or saved.shape != live.shape or not same:
            return f"{key}: the live variable does not hold the value saved"
    return None
