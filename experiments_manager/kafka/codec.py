"""Self-describing Kafka records: one sample (nested structure of arrays) <-> bytes.

A record value is

    b"EMK1" | header length (uint32, little-endian) | header (JSON, UTF-8) | payload

The header names every tensor with its dtype and shape, and gives the nesting
of the sample (tuples, lists, dicts), so a consumer decodes records without the
settings file that produced them. The payload is each tensor's little-endian
bytes in header order; a string tensor is stored as (uint32 length, bytes) per
element.

Records are data, not code: decoding checks every length, dtype and index and
raises `RecordError` for anything it cannot decode; it never evaluates input.
Records of one stream share one header, so a batch of them is decoded with a
few numpy operations (see `experiments_manager.kafka.decoder.BatchDecoder`).
"""

from __future__ import annotations

import json
import math
import struct
from typing import TYPE_CHECKING, Any, Iterable, Sequence, Union, cast

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

# a schema's nesting: a field index, or {"tuple": [...]}, {"list": [...]} or {"dict": {key: ...}} of nestings
Structure = Union[int, dict[str, Any]]

MAGIC = b"EMK1"
_PREFIX = struct.Struct("<4sI")
MAX_HEADER_BYTES = 1 << 20
MAX_NESTING = 32
MAX_ELEMENTS = 1 << 40
STRING = "string"
NUMERIC_DTYPES = (
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64", "complex64", "complex128", "bfloat16",
)


class RecordError(ValueError):
    """A record value that cannot be decoded.

    Args:
        kind: a short, stable description of the problem (used to count and log
            each kind once), e.g. "not an experiments_manager record".
        detail: more about this record.
    """

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        super().__init__(f"{kind}: {detail}" if detail else kind)


def numpy_dtype(name: str) -> np.dtype[Any]:
    """The numpy dtype for a header dtype name (bfloat16 comes from ml_dtypes)."""
    if name == "bfloat16":
        import ml_dtypes

        return cast("np.dtype[Any]", np.dtype(ml_dtypes.bfloat16))  # ml_dtypes types it as a bare np.generic
    return np.dtype(name)


class TensorField:
    """One tensor of a record: its name, dtype name and per-sample shape."""

    def __init__(self, name: str, dtype: str, shape: Iterable[int]) -> None:
        self.name = name
        self.dtype = dtype
        self.shape = tuple(shape)
        self.size = math.prod(self.shape)  # Python ints: no overflow on hostile shapes
        self.nbytes: int | None = None if dtype == STRING else self.size * numpy_dtype(dtype).itemsize

    def as_json(self) -> list[object]:
        return [self.name, self.dtype, list(self.shape)]


class Schema:
    """The layout shared by the records of a stream: nesting and tensor fields.

    Args:
        structure: the nesting as JSON-able data: an int (index of a field),
            {"tuple": [...]}, {"list": [...]} or {"dict": {key: ...}}.
        fields: list of `TensorField`, in payload order.

    Example:

    ```python
    schema = Schema.of(({"x": np.zeros(3, np.float32)}, np.int64(1)))
    value = schema.encode(({"x": np.ones(3, np.float32)}, np.int64(2)))
    decode(value)  # ({'x': array([1., 1., 1.], dtype=float32)}, array(2))
    ```
    """

    def __init__(self, structure: Structure, fields: Iterable[TensorField]) -> None:
        self.structure = structure
        self.fields = list(fields)
        self.header = json.dumps(
            {"structure": structure, "tensors": [field.as_json() for field in self.fields]},
            separators=(",", ":"), sort_keys=True,
        ).encode()
        self.prefix = _PREFIX.pack(MAGIC, len(self.header)) + self.header
        self.fixed_size = all(field.nbytes is not None for field in self.fields)
        # fixed_size: every field's nbytes is an int
        self.payload_bytes = sum(cast(int, field.nbytes) for field in self.fields) if self.fixed_size else None

    @classmethod
    def of(cls, sample: Any) -> Schema:
        """The schema of one sample: nested tuples/lists/dicts of arrays or scalars."""
        fields: list[TensorField] = []
        structure = _describe(sample, "sample", fields)
        return cls(structure, fields)

    @classmethod
    def from_header(cls, header: bytes) -> Schema:
        try:
            parsed = json.loads(header)
            tensors = parsed["tensors"]
            fields = [TensorField(str(name), _checked_dtype(dtype), _checked_shape(shape)) for name, dtype, shape in tensors]
            structure = parsed["structure"]
        except RecordError:
            raise
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            raise RecordError("corrupt header", str(error)[:200]) from None
        _check_structure(structure, len(fields), depth=0)
        return cls(structure, fields)

    def flat(self, sample: Any) -> list[NDArray[Any]]:
        """The sample's tensors in field order, as numpy arrays."""
        leaves: list[NDArray[Any]] = []
        _flatten(sample, self.structure, leaves)
        return leaves

    def describe(self) -> str:
        """The fields as text: `name dtype[shape], ...`."""
        return ", ".join(f"{field.name} {field.dtype}{list(field.shape)}" for field in self.fields)

    def encode(self, sample: Any) -> bytes:
        """The record value of one sample (which must have this schema)."""
        return self._encode_leaves(self.flat(sample))

    def _encode_leaves(self, leaves: Sequence[NDArray[Any]]) -> bytes:
        return self.prefix + b"".join(_tensor_bytes(leaf, field) for leaf, field in zip(leaves, self.fields))

    def encode_rows(self, flat_batch: Sequence[NDArray[Any]]) -> list[bytes]:
        """Record values for each row of a batch given as field-ordered arrays with a leading batch axis."""
        count = len(flat_batch[0]) if flat_batch else 0
        if not self.fixed_size:
            return [self._encode_leaves([array[row] for array in flat_batch]) for row in range(count)]
        columns = [np.frombuffer(self.prefix, np.uint8)[None, :].repeat(count, axis=0)]
        for array, field in zip(flat_batch, self.fields):
            little = np.ascontiguousarray(array, dtype=numpy_dtype(field.dtype).newbyteorder("<"))
            columns.append(little.reshape(count, -1).view(np.uint8))
        rows = np.concatenate(columns, axis=1)
        return [row.tobytes() for row in rows]

    def nest(self, leaves: Sequence[Any]) -> Any:
        """Builds the sample's nesting around field-ordered leaves."""
        return _nest(self.structure, leaves)

    def decode_payload(self, value: bytes, start: int) -> list[NDArray[Any]]:
        """Field-ordered arrays of one record, its payload starting at `start`."""
        leaves: list[NDArray[Any]] = []
        position = start
        for field in self.fields:
            array, position = _read_tensor(value, position, field)
            leaves.append(array)
        if position != len(value):
            raise RecordError("payload size mismatch", f"{len(value) - position} bytes left over")
        return leaves


def split_header(value: object) -> tuple[bytes, int]:
    """(header bytes, payload start) of a record value, or RecordError."""
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) < _PREFIX.size:
        raise RecordError("not an experiments_manager record", "too short")
    magic, length = _PREFIX.unpack_from(value, 0)
    if magic != MAGIC:
        raise RecordError("not an experiments_manager record", f"starts with {bytes(value[:4])!r}")
    if length > MAX_HEADER_BYTES or _PREFIX.size + length > len(value):
        raise RecordError("corrupt header", f"header length {length} in a {len(value)}-byte record")
    return bytes(value[_PREFIX.size:_PREFIX.size + length]), _PREFIX.size + length


def decode(value: bytes) -> Any:
    """One record value -> the sample (nested structure of numpy arrays)."""
    header, start = split_header(value)
    schema = Schema.from_header(header)
    return schema.nest(schema.decode_payload(value, start))


def _describe(value: Any, name: str, fields: list[TensorField]) -> Structure:
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError(f"{name}: dict keys must be strings, got {sorted(map(repr, value))}")
        return {"dict": {key: _describe(value[key], f"{name}.{key}", fields) for key in sorted(value)}}
    if isinstance(value, (tuple, list)):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {kind: [_describe(item, f"{name}.{index}", fields) for index, item in enumerate(value)]}
    array = np.asarray(value)
    dtype = STRING if array.dtype.kind in "SUO" else array.dtype.name
    if dtype != STRING and dtype not in NUMERIC_DTYPES:
        raise TypeError(f"{name}: dtype {array.dtype} cannot be sent in a record")
    fields.append(TensorField(name, dtype, array.shape))
    return len(fields) - 1


def _flatten(value: Any, structure: Structure, leaves: list[NDArray[Any]]) -> None:
    if isinstance(structure, int):
        leaves.append(np.asarray(value))
    elif "dict" in structure:
        for key, sub in structure["dict"].items():
            _flatten(value[key], sub, leaves)
    else:
        for item, sub in zip(value, next(iter(structure.values())), strict=True):
            _flatten(item, sub, leaves)


def _nest(structure: Structure, leaves: Sequence[Any]) -> Any:
    if isinstance(structure, int):
        return leaves[structure]
    if "dict" in structure:
        return {key: _nest(sub, leaves) for key, sub in structure["dict"].items()}
    items = [_nest(sub, leaves) for sub in next(iter(structure.values()))]
    return tuple(items) if "tuple" in structure else items


def _check_structure(structure: object, count: int, depth: int) -> None:
    if depth > MAX_NESTING:
        raise RecordError("corrupt header", "structure nested too deeply")
    if isinstance(structure, int) and not isinstance(structure, bool):
        if not 0 <= structure < count:
            raise RecordError("corrupt header", f"structure refers to tensor {structure} of {count}")
        return
    if not isinstance(structure, dict) or len(structure) != 1:
        raise RecordError("corrupt header", "structure: expected an index or one of tuple/list/dict")
    kind, items = next(iter(structure.items()))
    if kind == "dict" and isinstance(items, dict):
        items = items.values()
    elif kind not in ("tuple", "list") or not isinstance(items, list):
        raise RecordError("corrupt header", f"structure: unknown kind {kind!r}")
    for item in items:
        _check_structure(item, count, depth + 1)


def _checked_dtype(dtype: object) -> str:
    if dtype != STRING and dtype not in NUMERIC_DTYPES:
        raise RecordError("corrupt header", f"unknown dtype {dtype!r}")
    return dtype


def _checked_shape(shape: Any) -> list[int]:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise RecordError("corrupt header", f"shape {shape!r}")
    if len(shape) > MAX_NESTING or math.prod(shape) > MAX_ELEMENTS:
        raise RecordError("corrupt header", f"shape {shape[:MAX_NESTING]} too large")
    return shape


def _tensor_bytes(array: Any, field: TensorField) -> bytes:
    array = np.asarray(array)
    if tuple(array.shape) != field.shape:
        raise ValueError(f"{field.name}: shape {array.shape} differs from the stream's {field.shape}")
    if field.dtype != STRING:
        return np.ascontiguousarray(array, dtype=numpy_dtype(field.dtype).newbyteorder("<")).tobytes()
    parts: list[bytes] = []
    for item in array.reshape(-1):
        data = item.encode() if isinstance(item, str) else bytes(item)
        parts.append(struct.pack("<I", len(data)) + data)
    return b"".join(parts)


def _read_tensor(value: bytes, position: int, field: TensorField) -> tuple[NDArray[Any], int]:
    if field.dtype != STRING:
        assert field.nbytes is not None  # set for every dtype but STRING
        end = position + field.nbytes
        if end > len(value):
            raise RecordError("payload size mismatch", f"{field.name} needs {field.nbytes} bytes")
        dtype = numpy_dtype(field.dtype)
        array = np.frombuffer(value, dtype.newbyteorder("<"), field.size, position).astype(dtype)
        return array.reshape(field.shape), end
    items: list[bytes] = []
    for _ in range(field.size):
        if position + 4 > len(value):
            raise RecordError("payload size mismatch", f"{field.name}: string length cut")
        (length,) = struct.unpack_from("<I", value, position)
        position += 4
        if position + length > len(value):
            raise RecordError("payload size mismatch", f"{field.name}: string cut")
        items.append(bytes(value[position:position + length]))
        position += length
    return np.array(items, dtype=object).reshape(field.shape), position
