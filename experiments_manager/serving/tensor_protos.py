"""gRPC's TensorProtos to arrays and back, as TF Serving reads and writes them.

Inputs are refused unless their dtype is the signature's and their content is exactly what their declared shape
holds; outputs use the typed repeated fields (`float_val`, `int64_val`, ...) as TF Serving does, so clients reading
`outputs[name].float_val` work unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Union, cast

import numpy as np

from experiments_manager.serving.errors import RequestError
from experiments_manager.serving.tensors import check_names

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from typing_extensions import Buffer

    from experiments_manager.serving.batching import Arrays


def arrays_from_protos(protos: Any, specs: dict[str, Any]) -> Arrays:
    """gRPC `inputs` map -> arrays, refusing dtypes that differ from the signature's, and content that is not
    exactly what the declared shape holds."""
    check_names(protos.keys(), specs)
    arrays: Arrays = {}
    for name, spec in specs.items():
        proto = protos[name]
        if proto.dtype != spec.dtype.as_datatype_enum:
            raise RequestError(f"input {name!r}: expected dtype {spec.dtype.name}, got {_dtype_name(proto.dtype)}")
        shape = _declared_shape(proto, name)
        content = proto.tensor_content  # a copy at each reading: read once
        _check_content(proto, content, spec, shape, name)  # before decoding: the declared size costs nothing to claim
        try:
            arrays[name] = _ndarray(proto, content, spec, shape)
        except Exception as error:  # malformed content: the client's fault, not ours
            raise RequestError(f"input {name!r}: malformed TensorProto: {error}") from None
    return arrays


def _dtype_name(enum: int) -> str:
    import tensorflow as tf

    if not enum:
        return "no dtype"
    try:
        return cast(str, tf.dtypes.as_dtype(enum).name)
    except TypeError:  # an enum value TensorFlow does not define
        return f"an undefined DataType enum value ({enum})"


def _declared_shape(proto: Any, name: str) -> list[int]:
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if any(size < 0 for size in dims) or proto.tensor_shape.unknown_rank:
        raise RequestError(f"input {name!r}: tensor_shape: expected known dims >= 0, got {dims}")
    return dims


def _check_content(proto: Any, content: bytes, spec: Any, shape: list[int], name: str) -> None:
    """The values sent must be as many as the shape declares (TensorFlow would pad a short list with its last
    value: a 61-byte request declaring 10^7 rows would cost the server 10^7 rows), in the dtype's own field."""
    declared = int(np.prod(shape, dtype=object)) if shape else 1
    field = _TYPED_FIELDS.get(spec.dtype.name)
    other = [other for other in set(_TYPED_FIELDS.values()) if other != field and len(getattr(proto, other))]
    if other:
        raise RequestError(f"input {name!r}: values in {sorted(other)} for a {spec.dtype.name} tensor "
                           f"(expected {field or 'tensor_content'})")
    if content and spec.dtype.name != "string":
        sent = len(content) / np.dtype(spec.dtype.as_numpy_dtype).itemsize
        where: Optional[str] = "tensor_content"
    else:
        sent = len(getattr(proto, field)) if field else 0
        where = field
    if sent != declared:
        raise RequestError(f"input {name!r}: tensor_shape {shape} declares {declared} values, {where} holds "
                           f"{sent:g}: send every value")


def _ndarray(proto: Any, content: bytes, spec: Any, shape: list[int]) -> NDArray[Any]:
    """TensorProto -> ndarray; raw `tensor_content` read without a copy (the common, fast case)."""
    if content and spec.dtype.name != "string":
        return np.frombuffer(content, spec.dtype.as_numpy_dtype).reshape(shape)
    import tensorflow as tf

    return cast("NDArray[Any]", tf.make_ndarray(proto))


def proto_from_array(array: NDArray[Any], proto: Any = None) -> Any:
    """ndarray -> TensorProto with typed repeated fields, as TF Serving answers.

    Args:
        array: the output.
        proto: an empty TensorProto to fill (a response's `outputs[name]`: no copy), or None for a new one.
    """
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto() if proto is None else proto
    dtype = tf.dtypes.as_dtype(array.dtype if array.dtype != object else tf.string)
    field = _TYPED_FIELDS.get(dtype.name)
    if field is None:
        proto.CopyFrom(tf.make_tensor_proto(array))
        return proto
    proto.dtype = dtype.as_datatype_enum
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    flat = array.ravel()
    if dtype.name in ("float16", "bfloat16"):
        flat = flat.view(np.uint16)
    values = getattr(proto, field)
    for start in range(0, len(flat), _EXTEND_VALUES):  # no Python object for every value at once
        values.extend(flat[start:start + _EXTEND_VALUES].tolist())
    return proto


_EXTEND_VALUES = 1 << 16


def predict_response_bytes(model_spec: Any, outputs: Arrays) -> bytes:
    """A serialized `PredictResponse`: the bytes `SerializeToString` gives for `model_spec` and the outputs as
    `proto_from_array` writes them, made without a protobuf of the outputs: a float32 or float64 output's packed
    `float_val` / `double_val` is its array's own bytes, so an answer costs one copy of itself (protobuf would hold
    the values, then their serialization).

    Args:
        model_spec: the response's `ModelSpec`.
        outputs: dict name -> ndarray.
    """
    from tensorflow.core.framework import tensor_pb2

    parts: list[Union[bytes, memoryview]] = []
    for name, array in outputs.items():
        packed = _PACKED_FIELDS.get(array.dtype.str)
        if packed is None or not array.size:
            tensor = [proto_from_array(array).SerializeToString()]
        else:
            header = tensor_pb2.TensorProto(dtype=packed[0])
            for size in array.shape:
                header.tensor_shape.dim.add(size=size)
            values = memoryview(cast("Buffer", np.ascontiguousarray(array))).cast("B")  # stubs: a buffer in 3.12+
            tensor = [header.SerializeToString(), packed[1], _varint(values.nbytes), values]
        key = name.encode()
        entry = [b"\x0a", _varint(len(key)), key, b"\x12", _varint(sum(len(part) for part in tensor)), *tensor]
        parts += [b"\x0a", _varint(sum(len(part) for part in entry)), *entry]  # outputs (1): a map entry
    spec = model_spec.SerializeToString()
    return b"".join([*parts, b"\x12", _varint(len(spec)), spec])  # model_spec (2)


# dtype -> (DataType enum, the tag of its packed field): DT_FLOAT's float_val (5), DT_DOUBLE's double_val (6)
_PACKED_FIELDS = {"<f4": (1, b"\x2a"), "<f8": (2, b"\x32")}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


_TYPED_FIELDS = {
    "float32": "float_val",
    "float64": "double_val",
    "int32": "int_val",
    "int16": "int_val",
    "int8": "int_val",
    "uint8": "int_val",
    "uint16": "int_val",
    "int64": "int64_val",
    "uint32": "uint32_val",
    "uint64": "uint64_val",
    "bool": "bool_val",
    "string": "string_val",
    "float16": "half_val",
    "bfloat16": "half_val",
}
