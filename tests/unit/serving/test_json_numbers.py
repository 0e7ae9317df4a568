"""serving/json_numbers.py: a big body's arrays of numbers decoded window by window give what Python's `json` and
NumPy give for the same text, and a mistake in them gets the message a small body's would, or a precise one."""

import json

import numpy as np
import pytest

from experiments_manager.serving import json_numbers
from experiments_manager.serving.errors import RequestError

SEED = 20261125


@pytest.fixture
def tiny_windows(monkeypatch):
    """Every threshold shrunk, so short texts take the big body's path, across many windows."""
    monkeypatch.setattr(json_numbers, "BIG_BODY_BYTES", 10)
    monkeypatch.setattr(json_numbers, "MIN_TEXT_BYTES", 4)
    monkeypatch.setattr(json_numbers, "WINDOW_BYTES", 7)


def _decoded(text, dtype=np.float64, name="x"):
    body = json_numbers.parse_body(bytearray(text.encode()))  # the server reads into a bytearray
    value = body.get("instances", body.get("inputs"))
    assert isinstance(value, json_numbers.NumericText), f"not kept as numbers: {text[:60]}"
    return value.array(dtype, name)


@pytest.mark.parametrize("shape", [(3,), (2, 3), (40, 1), (2, 3, 4), (1, 1, 1, 5), (3, 0), (7, 2, 0)])
@pytest.mark.parametrize("separators", [(", ", ": "), (",", ":"), None])
def test_arrays_of_any_shape_and_spacing_decode_to_what_json_and_numpy_give(tiny_windows, shape, separators):
    print(f"seed {SEED}")
    values = np.random.default_rng(SEED).normal(size=shape) * 10.0 ** np.random.default_rng(SEED).integers(-8, 9, shape)
    text = json.dumps({"signature_name": "s", "instances": values.tolist()}, separators=separators,
                      indent=2 if separators is None else None)
    expected = np.asarray(json.loads(text)["instances"], np.float64).reshape(shape)
    assert np.array_equal(_decoded(text), expected)
    assert np.array_equal(_decoded(text, np.float32), expected.astype(np.float32))  # the same rounding as astype


def test_the_rest_of_the_body_is_parsed_as_json_and_each_array_knows_its_kind(tiny_windows):
    integers = np.random.default_rng(SEED).integers(-10**15, 10**15, (5, 3))
    text = json.dumps({"signature_name": "tagged", "inputs": {"a": integers.tolist(), "b": [[1.5, 2e3], [3, -4]],
                                                               "c": [[True, False]], "d": "text"}})
    body = json_numbers.parse_body(text.encode())
    assert body["signature_name"] == "tagged" and body["inputs"]["d"] == "text"
    assert body["inputs"]["c"] == [[True, False]]  # not numbers: left to json
    a, b = body["inputs"]["a"], body["inputs"]["b"]
    assert (a.kind, b.kind) == ("i", "f")
    assert np.array_equal(a.array(np.int64, "a"), integers)
    assert np.array_equal(b.array(np.float32, "b"), np.array([[1.5, 2e3], [3, -4]], np.float32))
    nan = json_numbers.parse_body(b'{"instances": [[NaN, Infinity], [-Infinity, 4e-5]]}')["instances"]
    assert np.array_equal(nan.array(np.float64, "x"), [[np.nan, np.inf], [-np.inf, 4e-5]], equal_nan=True)


@pytest.mark.parametrize("text, message", [
    ('{"instances": [[1, 2], [3]]}', "expected a rectangular nested list"),
    ('{"instances": [[1], []]}', "expected a rectangular nested list"),
    ('{"instances": [[1, 2], [[3], 4]]}', "expected a rectangular nested list"),
    ('{"instances": [[1 2], [3, 4]]}', "malformed JSON request body: a missing or extra comma"),
    ('{"instances": [[1, 2],, [3, 4]]}', "malformed JSON request body: a missing or extra comma"),
    ('{"instances": [[1, 2] [3, 4]]}', "malformed JSON request body: unbalanced brackets or a missing comma"),
    ('{"instances": [[1, 2], [3, 4]]]}', "malformed JSON request body: Expecting ','"),
    ('{"instances": [[.5, 2], [3, 4]]}', "malformed JSON request body: an invalid number"),
    ('{"instances": [[01, 2], [3, 4]]}', "malformed JSON request body: an invalid number"),
    ('{"instances": [[+1, 2], [3, 4]]}', "malformed JSON request body: an invalid number"),
    ('{"instances": [[1., 2], [3, 4]]}', "malformed JSON request body: an invalid number"),
    ('{"instances": [[nan, 2], [3, 4]]}', "malformed JSON request body: an invalid number"),
    ('{"instances": [[99999999999999999999, 2], [3, 4]]}', "cannot convert to int64"),
])
def test_mistakes_in_a_big_array_say_what_is_wrong(tiny_windows, text, message):
    with pytest.raises(RequestError) as refused:
        _decoded(text, np.int64 if "9999" in text else np.float64)
    assert message in refused.value.message


def test_small_bodies_and_bodies_with_escapes_or_many_strings_are_parsed_by_json_whole(monkeypatch):
    assert json_numbers.parse_body(b'{"instances": [[1, 2]]}') == {"instances": [[1, 2]]}  # small
    monkeypatch.setattr(json_numbers, "BIG_BODY_BYTES", 10)
    monkeypatch.setattr(json_numbers, "MIN_TEXT_BYTES", 4)
    escaped = '{"signature_name": "a\\"b", "instances": [[1, 2], [3, 4]]}'
    assert json_numbers.parse_body(escaped.encode()) == json.loads(escaped)
    monkeypatch.setattr(json_numbers, "MAX_STRINGS", 1)
    strings = '{"instances": [[1, 2], [3, 4]], "signature_name": "s"}'
    assert json_numbers.parse_body(strings.encode()) == json.loads(strings)
    with pytest.raises(RequestError, match="malformed JSON request body"):
        json_numbers.parse_body(b'{"instances": [[1, 2], [3, 4]]')


@pytest.mark.parametrize("big", [False, True], ids=["small body", "big body"])
def test_nesting_is_refused_past_the_limit_and_brackets_in_strings_do_not_count(monkeypatch, big):
    """`MAX_DEPTH` levels of arrays and objects pass (the body's object and a tensor of NumPy's largest rank), one
    more is refused by name before any parser recurses; brackets inside strings, escaped quotes too, are text."""
    if big:
        monkeypatch.setattr(json_numbers, "BIG_BODY_BYTES", 10)
        monkeypatch.setattr(json_numbers, "MIN_TEXT_BYTES", 4)
    limit = json_numbers.MAX_DEPTH
    deepest = '{"instances": ' + "[" * (limit - 1) + "1" + "]" * (limit - 1) + "}"
    body = json_numbers.parse_body(deepest.encode())
    value = body["instances"]
    assert (value.array(np.float32, "x") if big else np.asarray(value)).shape == (1,) * (limit - 1)
    for too_deep in ('{"instances": ' + "[" * limit + "1" + "]" * limit + "}",
                     '{"a": ' + '{"a": ' * limit + "1" + "}" * limit + "}",
                     '{"instances": ' + "[" * 1_000_000):  # never closed
        with pytest.raises(RequestError, match=f"nested deeper than {limit} levels"):
            value = json_numbers.parse_body(too_deep.encode()).get("instances")
            if isinstance(value, json_numbers.NumericText):  # a big body's array: refused when decoded
                value.array(np.float32, "x")
    with pytest.raises(RequestError) as unterminated:  # an unterminated string holds the rest: not nesting
        json_numbers.parse_body(b'{"instances": [[1]], "a": "' + b"[" * 1000)
    assert "nested deeper" not in unterminated.value.message
    text = "[" * 5000 + '\\"{' * 5000 + "\\"  # escaped quotes, and a backslash ending the string
    in_strings = json.dumps({"signature_name": text, "instances": [[1.0, 2.0]], "b": "[[[" * 30})
    assert json_numbers.parse_body(in_strings.encode())["signature_name"] == text
