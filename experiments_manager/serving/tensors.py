"""Tensors in and out of REST requests: TF Serving's JSON encodings (gRPC's TensorProtos: `tensor_protos`).

REST follows TF Serving's documented formats: row (`instances` -> `predictions`)
and columnar (`inputs` -> `outputs`), `{"b64": ...}` for bytes, and string
outputs whose name ends in `_bytes` encoded as b64. A big body's arrays of
numbers arrive as `json_numbers.NumericText`, decoded here straight into the
signature's dtype.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional, cast

import numpy as np
import orjson

from experiments_manager.serving.errors import RequestError
from experiments_manager.serving.json_numbers import NumericText

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from experiments_manager.serving.batching import Arrays


def rest_inputs(body: dict[str, Any], specs: dict[str, Any]) -> tuple[Arrays, bool]:
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


def _row_inputs(instances: Any, specs: dict[str, Any]) -> Arrays:
    if isinstance(instances, NumericText):  # the numbers of a big body, still text (`json_numbers`)
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
        check_names(instance.keys(), specs)
    return {name: _array([instance[name] for instance in instances], spec) for name, spec in specs.items()}


def _columnar_inputs(inputs: Any, specs: dict[str, Any]) -> Arrays:
    if isinstance(inputs, dict) and not is_b64(inputs):
        check_names(inputs.keys(), specs)
        return {name: _array(inputs[name], spec) for name, spec in specs.items()}
    only = _single_spec(specs, '"inputs" without input names')
    return {only.name: _array(inputs, only)}


def _single_spec(specs: dict[str, Any], what: str) -> Any:
    if len(specs) != 1:
        raise RequestError(f"{what}: the signature has several inputs {sorted(specs)}; name them")
    return next(iter(specs.values()))


def check_names(names: Iterable[str], specs: dict[str, Any]) -> None:
    names = set(names)
    missing, unknown = sorted(set(specs) - names), sorted(names - set(specs))
    if missing or unknown:
        raise RequestError(
            f"expected inputs {sorted(specs)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {unknown}" if unknown else "")
        )


def is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def non_number_leaf(value: Any) -> Optional[str]:
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


def _array(value: Any, spec: Any) -> NDArray[Any]:
    """JSON value -> ndarray of the spec's dtype; refuses ragged lists and mismatched kinds."""
    if spec.dtype.name == "string":
        return _string_array(value, spec.name)
    if isinstance(value, NumericText):
        _check_kind(value.kind, "int64" if value.kind == "i" else "float64", spec)
        return value.array(spec.dtype.as_numpy_dtype, spec.name)
    if isinstance(value, list) and any(isinstance(item, NumericText) for item in value):
        return _stacked(value, spec)  # a big body's named rows: a text per row (a list where it is small)
    other = non_number_leaf(value) if isinstance(value, list) else None
    if other is not None:
        raise RequestError(f"input {spec.name!r}: expected {spec.dtype.name} values, got {other}")
    try:
        raw = np.asarray(value)
    except ValueError:
        raise _ragged(spec.name) from None
    if raw.size:
        _check_kind(raw.dtype.kind, raw.dtype.name, spec)
    try:
        return raw.astype(spec.dtype.as_numpy_dtype, copy=False)
    except (TypeError, ValueError, OverflowError) as error:
        raise RequestError(f"input {spec.name!r}: cannot convert to {spec.dtype.name}: {error}") from None


def _check_kind(kind: str, dtype_name: str, spec: Any) -> None:
    """Refuses values of NumPy kind `kind` for the spec's dtype (booleans for floats, fractions for integers...)."""
    accepted = "b" if spec.dtype.is_bool else "iu" if spec.dtype.is_integer else "iuf" if spec.dtype.is_floating else ""
    if kind not in accepted:
        got = {"b": "booleans", "f": "non-integer numbers", "U": "strings", "O": "mixed values"}.get(kind, dtype_name)
        raise RequestError(f"input {spec.name!r}: expected {spec.dtype.name} values, got {got}")


def _stacked(items: list[Any], spec: Any) -> NDArray[Any]:
    arrays = [_array(item, spec) for item in items]
    if len({array.shape for array in arrays}) != 1:
        raise _ragged(spec.name)
    return np.stack(arrays)


def _string_array(value: Any, name: str) -> NDArray[Any]:
    if isinstance(value, NumericText):  # numbers, from a big body
        raise _not_strings(name)

    def decode(item: Any) -> Any:
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


def _not_strings(name: str, item: Any = 0) -> RequestError:
    got = "numbers" if isinstance(item, (bool, int, float)) else type(item).__name__
    return RequestError(f"input {name!r}: expected strings or {{\"b64\": ...}} objects, got {got}")


def _nested_shape(value: Any, name: str) -> tuple[int, ...]:
    shape: list[int] = []
    level = value
    while isinstance(level, list):
        shape.append(len(level))
        level = level[0] if level else None
    _check_rectangular(value, shape, name)
    return tuple(shape)


def _check_rectangular(value: Any, shape: list[int], name: str) -> None:
    if not shape:
        if isinstance(value, list):
            raise _ragged(name)
        return
    if not isinstance(value, list) or len(value) != shape[0]:
        raise _ragged(name)
    for item in value:
        _check_rectangular(item, shape[1:], name)


def _ragged(name: str) -> RequestError:
    return RequestError(f"input {name!r}: expected a rectangular nested list (ragged lists are refused)")


def rest_answer(outputs: Arrays, row_format: bool) -> Iterator[bytes]:
    """The JSON answering a predict, `predictions` (row) or `outputs` (columnar), as an iterator of bytes pieces
    made about `ANSWER_VALUES` values at a time (no list of every value at once, and a piece can be sent before the
    next is made); the values those of `json.dumps` of the whole answer, without its blanks. RequestError, at
    once, when the row format does not fit the outputs."""
    if not row_format:
        if len(outputs) == 1:
            name, array = next(iter(outputs.items()))
            return itertools.chain([b'{"outputs":'], _value_pieces(array, name), [b"}"])
        return itertools.chain([b'{"outputs":{'], itertools.chain.from_iterable(
            itertools.chain([b"," * bool(index) + json.dumps(name).encode() + b":"], _value_pieces(array, name))
            for index, (name, array) in enumerate(outputs.items())), [b"}}"])
    sizes = {name: (array.shape[0] if array.ndim else None) for name, array in outputs.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise RequestError(
            f"row format needs every output to share its first (batch) dimension, got {sizes}; "
            'use the columnar format ("inputs")'
        )
    if len(outputs) == 1:
        name, array = next(iter(outputs.items()))
        return itertools.chain([b'{"predictions":'], _value_pieces(array, name), [b"}"])

    def rows(start: int, stop: int) -> bytes:
        columns = {name: json_value(array[start:stop], name) for name, array in outputs.items()}
        return _json_bytes([{name: column[index] for name, column in columns.items()} for index in range(stop - start)],
                           all(_finite(array[start:stop]) for array in outputs.values()))

    row_values = sum(array[:1].size for array in outputs.values())
    count = cast(int, next(iter(sizes.values())))  # the shared batch dimension (None refused above)
    return itertools.chain([b'{"predictions":'], _list_pieces(rows, count, row_values), [b"}"])


ANSWER_VALUES = 16_384


def _value_pieces(array: NDArray[Any], name: str) -> Iterator[bytes]:
    if not array.ndim:
        return iter([_json_bytes(json_value(array, name), _finite(array))])
    return _list_pieces(lambda start, stop: _array_json(array[start:stop], name), len(array), array[:1].size)


def _list_pieces(make: Callable[[int, int], bytes], count: int, row_values: int) -> Iterator[bytes]:
    """The JSON of a list of `count` items, in pieces of about `ANSWER_VALUES` values (`row_values` an item):
    `make(start, stop)` gives the JSON of the list of items `start` to `stop`."""
    if count == 0:
        yield b"[]"
        return
    step = max(1, ANSWER_VALUES // max(row_values, 1))
    for start in range(0, count, step):
        piece = make(start, min(start + step, count))
        yield (b"," if start else b"[") + piece[1:-1]
    yield b"]"


def _array_json(array: NDArray[Any], name: str) -> bytes:
    """The JSON of an ndarray as nested lists: its numbers by orjson (about 10x faster than `json`) as float64,
    the digits Python writes for the float32 value; NaN and Infinity, which orjson would write null, by `json`."""
    if array.dtype == object or array.dtype.kind == "S":
        return _json_bytes(json_value(array, name), True)
    if array.dtype.kind not in "biuf":
        array = array.astype(np.float32)
    if array.dtype.kind == "f":
        if not _finite(array):
            return json.dumps(array.tolist()).encode()
        array = array.astype(np.float64, copy=False)
    return orjson.dumps(np.ascontiguousarray(array), option=orjson.OPT_SERIALIZE_NUMPY)


def _finite(array: NDArray[Any]) -> bool:
    return array.dtype.kind != "f" or bool(np.isfinite(array).all())


def _json_bytes(value: Any, finite: bool) -> bytes:
    """`json.dumps(value)` as bytes, by orjson when no float in it is NaN or infinite (`finite`)."""
    if finite:
        try:
            return orjson.dumps(value)
        except (TypeError, orjson.JSONEncodeError):  # beyond what orjson writes (an int over 64 bits)
            pass
    return json.dumps(value).encode()


def json_value(array: NDArray[Any], name: str) -> Any:
    """ndarray -> nested lists; bytes as text, or `{"b64": ...}` for `*_bytes` outputs and non-UTF-8."""
    if array.dtype == object or array.dtype.kind == "S":
        return _map_nested(array.tolist(), lambda item: _bytes_json(item, name))
    if array.dtype.kind not in "biuf":
        array = array.astype(np.float32)
    return array.tolist()


def _bytes_json(item: Any, name: str) -> Any:
    if not isinstance(item, bytes):
        return item
    if not name.endswith("_bytes"):
        try:
            return item.decode()
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(item).decode()}


def _map_nested(value: Any, function: Callable[[Any], Any]) -> Any:
    if isinstance(value, list):
        return [_map_nested(item, function) for item in value]
    return function(value)


