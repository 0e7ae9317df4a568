"""One loaded model version: its signatures, input checks and calls."""

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

import numpy as np

from experiments_manager.serving.errors import RequestError, not_found
from experiments_manager.utils.checksums import verify_manifest
from experiments_manager.run.version_records import read_class_names_file, read_record_file

if TYPE_CHECKING:
    from experiments_manager.serving.batching import Arrays

_LOG = logging.getLogger(__name__)


class DamagedVersion(Exception):
    """A version whose files differ from its checksums: not loaded (the versions served keep answering)."""
DEFAULT_SIGNATURE = "serving_default"


class Servable:
    """A SavedModel version loaded in memory and ready to answer.

    Args:
        name: the model name.
        version: the version number.
        path: the version folder (holding saved_model.pb).

    Example:

    ```python
    servable = Servable.load("model_curve_fitting", 3, Path("exp/exported_models/3"))
    outputs = servable.call("serving_default", {"input": np.zeros((2, 1), np.float32)})
    ```
    """

    def __init__(self, name: str, version: int, path: "str | Path", loaded: Any,
                 signature_defs: "Mapping[str, Any]") -> None:
        self.name = name
        self.version = version
        self.path = Path(path)
        self._loaded = loaded  # keeps the functions' variables alive
        self.signature_defs = signature_defs
        self.retired = False  # set when unloaded; in-flight requests still finish
        # the epoch and monitored value the version holds (its exporter's record), or None (an older engine's)
        self.record = read_record_file(path)
        self.class_names = read_class_names_file(path)  # the settings' class_names at export, or None
        self.functions: "dict[str, Any]" = dict(loaded.signatures)  # signature key -> concrete function
        self.input_specs: "dict[str, dict[str, Any]]" = {  # signature key -> input name -> tf.TensorSpec
            key: dict(function.structured_input_signature[1]) for key, function in self.functions.items()
        }

    @classmethod
    def load(cls, name: str, version: int, path: "str | Path") -> "Servable":
        """Checks the version's files against its checksums (when it has them), loads the SavedModel and runs each
        signature once, so the first request is not slow.

        Raises:
            DamagedVersion: a file differs from what the export wrote (overwritten, truncated, missing).
        """
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        problem = verify_manifest(path)
        if problem is not None:
            raise DamagedVersion(f"damaged: {problem}")
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
        servable = cls(name, version, path, tf.saved_model.load(str(path)), proto.meta_graphs[0].signature_def)
        servable.warm_up()
        return servable

    def warm_up(self) -> None:
        """Calls every signature on a one-example input (None dimensions become 1)."""
        for key, specs in self.input_specs.items():
            if any(spec.dtype.name == "string" for spec in specs.values()):
                continue  # no neutral example string exists; the first real request warms it
            example = {
                name: np.zeros([1 if size is None else size for size in spec.shape.as_list()], spec.dtype.as_numpy_dtype)
                for name, spec in specs.items()
            }
            try:
                self.call(key, example)
            except Exception as error:  # a model may refuse zeros; it is still servable
                _LOG.info("%s version %s: warm-up of %r skipped: %s", self.name, self.version, key, error)

    def signature_key(self, signature_name: str) -> str:
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.functions:
            raise RequestError(
                f"Serving signature name: {key!r} not found in signature def; "
                f"expected one of {sorted(self.functions)}"
            )
        return key

    def check_inputs(self, key: str, arrays: "Arrays") -> None:
        """Raises RequestError unless `arrays` match the signature's input shapes."""
        check_shapes(self.input_specs[key], arrays)

    def answer_bytes_at_least(self, key: str, rows: int, output_filter: "tuple[str, ...] | list[str]" = ()) -> int:
        """The fewest bytes signature `key`'s outputs (those `output_filter` names) take for `rows` rows: each
        output's fixed dimensions times its item size for float32 and float64 (sent as their bytes), 1 byte a value
        for the others (integers and booleans are varints, 1 byte at least); an output whose size is known only once
        computed, a string or a ragged one, counts nothing. What a front end with an answer limit refuses before the
        work: an answer this size cannot fit.

        Example:

        ```python
        servable.answer_bytes_at_least("serving_default", 1_000_000)   # 8_000_000 for two float32 outputs of (1,)
        ```
        """
        outputs = self.functions[key].structured_outputs
        names = output_filter or list(outputs)
        total = 0
        for name in names:
            spec = outputs.get(name)
            dims = spec.shape.as_list()[1:] if spec is not None and spec.shape.rank else None
            if dims is None or None in dims or spec.dtype.name == "string":
                continue
            size = spec.dtype.size if spec.dtype.name in ("float32", "float64") else 1
            total += rows * int(np.prod(dims, dtype=np.int64)) * size
        return total

    def call(self, key: str, arrays: "Arrays", output_filter: "tuple[str, ...] | list[str]" = ()) -> "Arrays":
        """Runs signature `key` on checked arrays; returns dict output name -> ndarray."""
        import tensorflow as tf

        try:
            outputs = self.functions[key](**{name: tf.constant(array) for name, array in arrays.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            raise refused_input(error) from None
        return {name: tensor.numpy() for name, tensor in filtered_outputs(outputs, output_filter).items()}


def check_shapes(specs: "dict[str, Any]", arrays: "dict[str, Any]") -> None:
    """Raises RequestError unless each array of `arrays` matches its `tf.TensorSpec`'s shape (the server's check,
    also `predict --edge`'s).

    Args:
        specs: {input name: tf.TensorSpec} of the signature.
        arrays: {input name: array}, every input present (`tensor_protos.arrays_from_protos` checked the names).

    Example:

    ```python
    check_shapes({"input": tf.TensorSpec([None, 1])}, {"input": np.zeros((1, 5))})   # RequestError: ... [-1, 1] ...
    ```
    """
    for name, spec in specs.items():
        expected = spec.shape
        got = np.shape(arrays[name])
        if not expected.is_compatible_with(got):
            shown = [size if size is not None else -1 for size in expected.as_list()]
            raise RequestError(f"input {name!r}: expected shape {shown} (-1 = any), got {list(got)}")


def refused_input(error: Exception) -> RequestError:
    """The RequestError of a model call that failed on checked inputs (the server's, also `predict --edge`'s).

    Example:

    ```python
    raise refused_input(error) from None   # the model refused the input: <its first line>
    ```
    """
    return RequestError(f"the model refused the input: {first_line(error)}")


def filtered_outputs(outputs: "dict[str, Any]",
                     output_filter: "tuple[str, ...] | list[str]" = ()) -> "dict[str, Any]":
    """The outputs a request's `output_filter` names (all when empty), or RequestError naming the unknown ones.

    Args:
        outputs: {output name: value}.
        output_filter: the names asked for.

    Example:

    ```python
    filtered_outputs({"a": 1, "b": 2}, ["b"])   # {'b': 2}
    ```
    """
    if not output_filter:
        return dict(outputs)
    unknown = sorted(set(output_filter) - set(outputs))
    if unknown:
        raise RequestError(f"output_filter: unknown outputs {unknown}; expected some of {sorted(outputs)}")
    return {name: outputs[name] for name in output_filter}


def first_line(error: BaseException) -> str:
    """The first line of an error's message (TensorFlow's run to many lines), or its type name."""
    text = str(getattr(error, "message", error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


def missing_servable(name: str, version: Optional[int] = None, label: Optional[str] = None) -> RequestError:
    what = f"Specific({name}, {version})" if version is not None else f"Label({name}, {label})" if label else f"Latest({name})"
    return not_found(f"Servable not found for request: {what}")
