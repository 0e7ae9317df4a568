"""Decoding many records of one stream at once, skipping (and counting) those that cannot be decoded.

The record format itself is `kafka.codec`; this is the consumer side's fast
path over it: records of a fixed-size schema become numpy columns in a few
operations, poison records are counted by kind instead of stopping the stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence, cast

import numpy as np

from experiments_manager.kafka.codec import RecordError, Schema, numpy_dtype, split_header

if TYPE_CHECKING:
    from numpy.typing import NDArray


class BatchDecoder:
    """Decodes many records of one stream, skipping (and counting) those it cannot decode.

    The first decodable record fixes the stream's schema; a record with another
    schema is skipped as "schema differs from the stream's". Records of a
    fixed-size schema are decoded together: one join and one strided view per
    tensor.

    Args:
        schema: the expected `Schema`, or None to take the first record's.

    Example:

    ```python
    decoder = BatchDecoder()
    leaves, kept = decoder.decode([value1, value2, b"garbage"])
    decoder.errors  # {'not an experiments_manager record': 1}
    ```
    """

    def __init__(self, schema: Optional[Schema] = None) -> None:
        self.schema = schema
        self.errors: dict[str, int] = {}
        self._first_errors: dict[str, Optional[str]] = {}

    def _skip(self, error: RecordError) -> None:
        self.errors[error.kind] = self.errors.get(error.kind, 0) + 1
        self._first_errors.setdefault(error.kind, str(error))

    def new_error_kinds(self) -> list[tuple[str, str]]:
        """(kind, first message) of error kinds seen since the last call; each kind is returned once."""
        found = list(self._first_errors.items())
        self._first_errors = {kind: None for kind in self._first_errors}
        return [(kind, message) for kind, message in found if message is not None]

    def decode(self, values: Sequence[Optional[bytes]]) -> tuple[Optional[list[NDArray[Any]]], list[int]]:
        """Decodes record values.

        Args:
            values: list of bytes (None, a record without a value, is skipped).

        Returns:
            (leaves, kept): field-ordered arrays with a leading axis over the
            decoded records, and the indices (into `values`) of those records.
            leaves is None when no record could be decoded.
        """
        fast = self._decode_uniform(cast("Sequence[bytes]", values))  # a None value: TypeError there, caught
        if fast is not None:
            return fast, list(range(len(values)))
        kept: list[int] = []
        for index, value in enumerate(values):
            try:
                header, start = split_header(value)
                assert value is not None  # split_header raised RecordError for it
                if self.schema is None:
                    self.schema = Schema.from_header(header)
                elif header != self.schema.header:  # parsed first: a corrupt header is reported as such
                    raise RecordError("schema differs from the stream's", Schema.from_header(header).describe())
                if self.schema.fixed_size and len(value) - start != self.schema.payload_bytes:
                    raise RecordError(
                        "payload size mismatch", f"{len(value) - start} bytes, expected {self.schema.payload_bytes}"
                    )
                if not self.schema.fixed_size:
                    self.schema.decode_payload(value, start)  # validates; decoded again below
                kept.append(index)
            except RecordError as error:
                self._skip(error)
        if not kept:
            return None, kept
        assert self.schema is not None  # set by the first record kept
        selected = cast("list[bytes]", [values[index] for index in kept])  # kept: split_header took them
        if self.schema.fixed_size:
            return self._columns(np.frombuffer(b"".join(selected), np.uint8).reshape(len(selected), -1)), kept
        return self._stack(selected), kept

    def _decode_uniform(self, values: Sequence[bytes]) -> Optional[list[NDArray[Any]]]:
        """The usual case in one pass: every record has the stream's fixed-size layout (else None)."""
        schema = self.schema
        if schema is None or not schema.fixed_size or not values:
            return None
        assert schema.payload_bytes is not None  # a fixed-size schema
        size = len(schema.prefix) + schema.payload_bytes
        try:
            if set(map(len, values)) != {size}:
                return None
            raw = np.frombuffer(b"".join(values), np.uint8).reshape(len(values), size)
        except TypeError:  # a record without a value
            return None
        if not (raw[:, :len(schema.prefix)] == np.frombuffer(schema.prefix, np.uint8)).all():
            return None
        return self._columns(raw)

    def _stack(self, values: Sequence[bytes]) -> list[NDArray[Any]]:
        assert self.schema is not None  # called once a record set it
        start = len(self.schema.prefix)
        rows = [self.schema.decode_payload(value, start) for value in values]
        return [np.stack(column) for column in zip(*rows)]

    def _columns(self, raw: NDArray[np.uint8]) -> list[NDArray[Any]]:
        """Field-ordered arrays from an (records, record bytes) uint8 array of fixed-size records."""
        assert self.schema is not None  # called once a record set it
        leaves: list[NDArray[Any]] = []
        position = len(self.schema.prefix)
        for field in self.schema.fields:
            dtype = numpy_dtype(field.dtype)
            assert field.nbytes is not None  # a fixed-size schema
            block = np.ascontiguousarray(raw[:, position:position + field.nbytes])
            array = block.view(dtype.newbyteorder("<")).reshape((len(raw),) + field.shape)
            leaves.append(array.astype(dtype, copy=False))
            position += field.nbytes
        return leaves
