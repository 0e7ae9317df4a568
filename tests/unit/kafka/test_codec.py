"""Kafka records: self-describing encoding of samples, and robust decoding of bad records."""

import json
import struct

import numpy as np
import pytest

from experiments_manager.kafka.codec import RecordError, Schema, decode, split_header
from experiments_manager.kafka.decoder import BatchDecoder


def nested_sample(seed):
    rng = np.random.default_rng(seed)
    inputs = {
        "image": rng.integers(0, 255, size=(4, 3, 2), dtype=np.uint8),
        "features": rng.normal(size=(5,)).astype(np.float16),
        "ids": (rng.integers(-5, 5, size=(2,), dtype=np.int64), np.bool_(seed % 2 == 0)),
        "word": np.array([b"kafka", "\u00e9t\u00e9".encode()], dtype=object),
    }
    labels = [np.float64(seed) / 3, rng.integers(0, 9, size=(1,), dtype=np.int32)]
    return inputs, labels


def assert_same(decoded, expected):
    if isinstance(expected, dict):
        assert isinstance(decoded, dict) and sorted(decoded) == sorted(expected)
        for key in expected:
            assert_same(decoded[key], expected[key])
    elif isinstance(expected, (tuple, list)):
        assert type(decoded) is type(expected) and len(decoded) == len(expected)
        for item, wanted in zip(decoded, expected):
            assert_same(item, wanted)
    else:
        expected = np.asarray(expected)
        assert decoded.dtype == expected.dtype and decoded.shape == expected.shape
        assert decoded.tolist() == expected.tolist()


@pytest.mark.claim('records are self-describing (names, dtypes, shapes)')
def test_nested_dict_tuple_list_samples_of_many_dtypes_round_trip():
    sample = nested_sample(3)
    value = Schema.of(sample).encode(sample)
    assert_same(decode(value), sample)


@pytest.mark.claim('records are self-describing (names, dtypes, shapes)')
def test_header_names_every_tensor_with_dtype_and_shape():
    sample = nested_sample(0)
    header, _ = split_header(Schema.of(sample).encode(sample))
    tensors = {name: (dtype, shape) for name, dtype, shape in json.loads(header)["tensors"]}
    assert tensors["sample.0.image"] == ("uint8", [4, 3, 2])
    assert tensors["sample.0.features"] == ("float16", [5])
    assert tensors["sample.0.word"] == ("string", [2])
    assert tensors["sample.1.0"] == ("float64", [])


def test_batch_of_rows_encodes_like_single_samples_and_decodes_together():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.array([1, 0, 1, 1], dtype=np.int64)
    schema = Schema.of((x[0], y[0]))
    values = schema.encode_rows([x, y])
    assert values[2] == schema.encode((x[2], y[2]))
    leaves, kept = BatchDecoder().decode(values)
    assert kept == [0, 1, 2, 3]
    assert leaves[0].tolist() == x.tolist() and leaves[0].dtype == np.float32
    assert leaves[1].tolist() == y.tolist()


def test_string_samples_decode_in_batches():
    schema = Schema.of((np.array(b"a"), np.float32(1)))
    values = [schema.encode((np.array(text), np.float32(index))) for index, text in enumerate([b"x", b"long text"])]
    leaves, kept = BatchDecoder().decode(values)
    assert kept == [0, 1]
    assert leaves[0].tolist() == [b"x", b"long text"] and leaves[1].tolist() == [0.0, 1.0]


@pytest.mark.claim('bad records are counted and skipped')
def test_poison_records_are_counted_by_kind_and_skipped():
    schema = Schema.of((np.zeros(3, np.float32), np.int64(0)))
    good = [schema.encode((np.full(3, i, np.float32), np.int64(i))) for i in range(3)]
    other_schema = Schema.of((np.zeros(4, np.float32), np.int64(0))).encode((np.zeros(4, np.float32), np.int64(0)))
    bad_header = b"EMK1" + struct.pack("<I", 5) + b"{oops"
    values = [good[0], b"plain text", None, good[1], other_schema, bad_header, good[2][:-3], good[2]]
    decoder = BatchDecoder()
    leaves, kept = decoder.decode(values)
    assert kept == [0, 3, 7]
    assert leaves[1].tolist() == [0, 1, 2]
    assert decoder.errors == {
        "not an experiments_manager record": 2,
        "schema differs from the stream's": 1,
        "corrupt header": 1,
        "payload size mismatch": 1,
    }
    first = dict(decoder.new_error_kinds())
    assert "plain text"[:4] in first["not an experiments_manager record"]
    assert decoder.new_error_kinds() == []  # each kind reported once


@pytest.mark.parametrize("header", [
    {"structure": 5, "tensors": [["x", "float32", [1]]]},
    {"structure": {"exec": [0]}, "tensors": [["x", "float32", [1]]]},
    {"structure": 0, "tensors": [["x", "object", [1]]]},
    {"structure": 0, "tensors": [["x", "float32", [-1]]]},
    {"tensors": []},
    {"structure": 0, "tensors": [["x", "float32", [2**70]]]},
    {"structure": 0, "tensors": [["x", "float32", [2**32, 2**32]]]},
])
def test_headers_that_do_not_describe_tensors_are_rejected(header):
    text = json.dumps(header).encode()
    value = b"EMK1" + struct.pack("<I", len(text)) + text + b"\0" * 4
    with pytest.raises(RecordError, match="corrupt header"):
        decode(value)


def test_a_header_length_past_the_record_is_rejected_without_reading_it():
    with pytest.raises(RecordError, match="corrupt header"):
        decode(b"EMK1" + struct.pack("<I", 1 << 30) + b"{}")


def test_hostile_headers_are_record_errors_not_crashes():
    deep = b"[" * 100_000
    value = b"EMK1" + struct.pack("<I", len(deep)) + deep
    with pytest.raises(RecordError, match="corrupt header"):
        decode(value)
    schema = Schema.of((np.zeros(2, np.float32),))
    decoder = BatchDecoder(schema)
    huge = json.dumps({"structure": 0, "tensors": [["x", "float32", [2**32, 2**32]]]}).encode()
    leaves, kept = decoder.decode([b"EMK1" + struct.pack("<I", len(huge)) + huge, schema.encode((np.ones(2, np.float32),))])
    assert kept == [1] and decoder.errors == {"corrupt header": 1}
