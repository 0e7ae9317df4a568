"""Tensors in and out of requests: TF Serving's REST JSON and gRPC TensorProto encodings.

REST follows TF Serving's documented formats: row (`instances` -> `predictions`)
and columnar (`inputs` -> `outputs`), `{"b64": ...}` for bytes, and string
outputs whose name ends in `_bytes` encoded as b64. gRPC outputs use the typed
repeated fields (`float_val`, `int64_val`, ...) as TF Serving does, so clients
reading `outputs[name].float_val` work unchanged.
"""

import base64
import binascii

import numpy as np

from experiments_manager.serving.errors import RequestError


def rest_inputs(body, specs):
    """Arrays for a parsed REST predict body.

    Args:
        body: the JSON object of the request.
        specs: dict input name -> `tf.TensorSpec` of the signature.

    Returns:
        (dict name -> ndarray, row_format).
    """
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances == has_inputs:
        raise RequestError('expected exactly one of "instances" (row format) or "inputs" (columnar format)')
    if has_instances:
        return _row_inputs(body["instances"], specs), True
    return _columnar_inputs(body["inputs"], specs), False


class NamedRows(dict):
    """Row-format `instances` of named inputs, gathered into one column (list or ndarray) per input name: what
    `json_worker` makes of a big body whose rows all name the same inputs."""


def _row_inputs(instances, specs):
    if isinstance(instances, NamedRows):
        _check_names(instances.keys(), specs)
        return {name: _array(instances[name], spec) for name, spec in specs.items()}
    if isinstance(instances, np.ndarray) and instances.ndim and len(instances):  # numeric rows parsed by json_worker
        only = _single_spec(specs, '"instances" without input names')
        return {only.name: _array(instances, only)}
    if not isinstance(instances, list) or not instances:
        raise RequestError('"instances": expected a non-empty list, one entry per example')
    named = [isinstance(instance, dict) and not is_b64(instance) for instance in instances]
    if not any(named):
        only = _single_spec(specs, '"instances" without input names')
        return {only.name: _array(instances, only)}
    if not all(named):
        raise RequestError('"instances": expected every entry to be an object of named inputs, or none')
    for instance in instances:
        _check_names(instance.keys(), specs)
    return {name: _array([instance[name] for instance in instances], spec) for name, spec in specs.items()}


def _columnar_inputs(inputs, specs):
    if isinstance(inputs, dict) and not is_b64(inputs):
        _check_names(inputs.keys(), specs)
        return {name: _array(inputs[name], spec) for name, spec in specs.items()}
    only = _single_spec(specs, '"inputs" without input names')
    return {only.name: _array(inputs, only)}


def _single_spec(specs, what):
    if len(specs) != 1:
        raise RequestError(f"{what}: the signature has several inputs {sorted(specs)}; name them")
    return next(iter(specs.values()))


def _check_names(names, specs):
    names = set(names)
    missing, unknown = sorted(set(specs) - names), sorted(names - set(specs))
    if missing or unknown:
        raise RequestError(
            f"expected inputs {sorted(specs)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {unknown}" if unknown else "")
        )


def is_b64(value):
    return isinstance(value, dict) and set(value) == {"b64"}


def non_number_leaf(value):
    """What the leaves of a nested list hold besides numbers: 'mixed values' (None, objects), else 'strings', or
    None when all are bools, ints and floats.

    Checked before `np.asarray`, which gives every element the width of the longest string: one long string
    among many short ones would make a small request cost gigabytes.
    """
    stack, found = [value], None
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif not isinstance(item, (bool, int, float)):
            if not isinstance(item, str):
                return "mixed values"
            found = "strings"
    return found


def _array(value, spec):
    """JSON value -> ndarray of the spec's dtype; refuses ragged lists and mismatched kinds."""
    if spec.dtype.name == "string":
        return _string_array(value, spec.name)
    other = non_number_leaf(value) if isinstance(value, list) else None
    if other is not None:
        raise RequestError(f"input {spec.name!r}: expected {spec.dtype.name} values, got {other}")
    try:
        raw = np.asarray(value)
    except ValueError:
        raise _ragged(spec.name) from None
    kind = raw.dtype.kind
    accepted = "b" if spec.dtype.is_bool else "iu" if spec.dtype.is_integer else "iuf" if spec.dtype.is_floating else ""
    if raw.size and kind not in accepted:
        got = {"b": "booleans", "f": "non-integer numbers", "U": "strings", "O": "mixed values"}.get(kind, raw.dtype.name)
        raise RequestError(f"input {spec.name!r}: expected {spec.dtype.name} values, got {got}")
    try:
        return raw.astype(spec.dtype.as_numpy_dtype)
    except (TypeError, ValueError, OverflowError) as error:
        raise RequestError(f"input {spec.name!r}: cannot convert to {spec.dtype.name}: {error}") from None


def _string_array(value, name):
    if isinstance(value, np.ndarray):  # numbers, parsed by json_worker
        raise _not_strings(name)

    def decode(item):
        if isinstance(item, list):
            return [decode(element) for element in item]
        if is_b64(item):
            try:
                return base64.b64decode(item["b64"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise RequestError(f"input {name!r}: invalid base64 in {{\"b64\": ...}}") from None
        if isinstance(item, str):
            return item.encode()
        raise _not_strings(name, item)

    decoded = decode(value)
    array = np.empty(_nested_shape(decoded, name), dtype=object)
    array[...] = decoded
    return array


def _not_strings(name, item=0):
    got = "numbers" if isinstance(item, (bool, int, float)) else type(item).__name__
    return RequestError(f"input {name!r}: expected strings or {{\"b64\": ...}} objects, got {got}")


def _nested_shape(value, name):
    shape, level = [], value
    while isinstance(level, list):
        shape.append(len(level))
        level = level[0] if level else None
    _check_rectangular(value, shape, name)
    return tuple(shape)


def _check_rectangular(value, shape, name):
    if not shape:
        if isinstance(value, list):
            raise _ragged(name)
        return
    if not isinstance(value, list) or len(value) != shape[0]:
        raise _ragged(name)
    for item in value:
        _check_rectangular(item, shape[1:], name)


def _ragged(name):
    return RequestError(f"input {name!r}: expected a rectangular nested list (ragged lists are refused)")


def rest_outputs(outputs, row_format):
    """The JSON object answering a predict: `predictions` (row) or `outputs` (columnar)."""
    if not row_format:
        if len(outputs) == 1:
            name, array = next(iter(outputs.items()))
            return {"outputs": json_value(array, name)}
        return {"outputs": {name: json_value(array, name) for name, array in outputs.items()}}
    sizes = {name: (array.shape[0] if array.ndim else None) for name, array in outputs.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise RequestError(
            f"row format needs every output to share its first (batch) dimension, got {sizes}; "
            'use the columnar format ("inputs")'
        )
    if len(outputs) == 1:
        name, array = next(iter(outputs.items()))
        return {"predictions": json_value(array, name)}
    columns = {name: json_value(array, name) for name, array in outputs.items()}
    count = next(iter(sizes.values()))
    return {"predictions": [{name: column[index] for name, column in columns.items()} for index in range(count)]}


def json_value(array, name):
    """ndarray -> nested lists; bytes as text, or `{"b64": ...}` for `*_bytes` outputs and non-UTF-8."""
    if array.dtype == object or array.dtype.kind == "S":
        return _map_nested(array.tolist(), lambda item: _bytes_json(item, name))
    if array.dtype.kind not in "biuf":
        array = array.astype(np.float32)
    return array.tolist()


def _bytes_json(item, name):
    if not isinstance(item, bytes):
        return item
    if not name.endswith("_bytes"):
        try:
            return item.decode()
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(item).decode()}


def _map_nested(value, function):
    if isinstance(value, list):
        return [_map_nested(item, function) for item in value]
    return function(value)


def arrays_from_protos(protos, specs):
    """gRPC `inputs` map -> arrays, refusing dtypes that differ from the signature's, and content that is not
    exactly what the declared shape holds."""
    _check_names(protos.keys(), specs)
    arrays = {}
    for name, spec in specs.items():
        proto = protos[name]
        if proto.dtype != spec.dtype.as_datatype_enum:
            raise RequestError(f"input {name!r}: expected dtype {spec.dtype.name}, got {_dtype_name(proto.dtype)}")
        shape = _declared_shape(proto, name)
        _check_content(proto, spec, shape, name)  # before decoding: the declared size costs nothing to claim
        try:
            arrays[name] = _ndarray(proto, spec, shape)
        except Exception as error:  # malformed content: the client's fault, not ours
            raise RequestError(f"input {name!r}: malformed TensorProto: {error}") from None
    return arrays


def _dtype_name(enum):
    import tensorflow as tf

    if not enum:
        return "no dtype"
    try:
        return tf.dtypes.as_dtype(enum).name
    except TypeError:  # an enum value TensorFlow does not define
        return f"an undefined DataType enum value ({enum})"


def _declared_shape(proto, name):
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if any(size < 0 for size in dims) or proto.tensor_shape.unknown_rank:
        raise RequestError(f"input {name!r}: tensor_shape: expected known dims >= 0, got {dims}")
    return dims


def _check_content(proto, spec, shape, name):
    """The values sent must be as many as the shape declares (TensorFlow would pad a short list with its last
    value: a 61-byte request declaring 10^7 rows would cost the server 10^7 rows), in the dtype's own field."""
    declared = int(np.prod(shape, dtype=object)) if shape else 1
    field = _TYPED_FIELDS.get(spec.dtype.name)
    other = [other for other in set(_TYPED_FIELDS.values()) if other != field and len(getattr(proto, other))]
    if other:
        raise RequestError(f"input {name!r}: values in {sorted(other)} for a {spec.dtype.name} tensor "
                           f"(expected {field or 'tensor_content'})")
    if proto.tensor_content and spec.dtype.name != "string":
        sent = len(proto.tensor_content) / np.dtype(spec.dtype.as_numpy_dtype).itemsize
        where = "tensor_content"
    else:
        sent = len(getattr(proto, field)) if field else 0
        where = field
    if sent != declared:
        raise RequestError(f"input {name!r}: tensor_shape {shape} declares {declared} values, {where} holds "
                           f"{sent:g}: send every value")


def _ndarray(proto, spec, shape):
    """TensorProto -> ndarray; raw `tensor_content` read without a copy (the common, fast case)."""
    if proto.tensor_content and spec.dtype.name != "string":
        return np.frombuffer(proto.tensor_content, spec.dtype.as_numpy_dtype).reshape(shape)
    import tensorflow as tf

    return tf.make_ndarray(proto)


def proto_from_array(array):
    """ndarray -> TensorProto with typed repeated fields, as TF Serving answers."""
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    dtype = tf.dtypes.as_dtype(array.dtype if array.dtype != object else tf.string)
    field = _TYPED_FIELDS.get(dtype.name)
    if field is None:
        return tf.make_tensor_proto(array)
    proto = tensor_pb2.TensorProto(
        dtype=dtype.as_datatype_enum,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]
        ),
    )
    flat = array.ravel()
    if dtype.name in ("float16", "bfloat16"):
        flat = flat.view(np.uint16)
    getattr(proto, field).extend(flat.tolist())
    return proto


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
