"""Big REST JSON bodies decoded straight to arrays, in memory bounded by their size.

Python's `json` makes a Python object of every number: a list of 10^6 short floats costs about 32 MB of objects
for 4 MB of text, and a 30 MB body took the server past 3 GB. Here a big body (over `BIG_BODY_BYTES`) is read
differently: every large JSON array that holds only numbers (`instances`, a column of `inputs`, a named row's
value) stays text, a `NumericText`, and the rest of the body (its keys, `signature_name`, small values) is parsed
by `json` as before. A `NumericText` becomes an ndarray of the dtype the signature asks for only when the input is
decoded (`tensors.rest_inputs`), window by window: its brackets are checked against the rectangular shape its
first element gives, its numbers checked against JSON's grammar (`_NUMBERS`: NaN and Infinity accepted, as
Python's `json` does) and read by NumPy's C parser straight into the result. No step holds more than the body,
the result and one window (`WINDOW_BYTES`); no window holds the GIL long enough to stall the other clients.

Every body's nesting is checked (`check_depth`), in time linear in its bytes and without recursion: one nested
deeper than `MAX_DEPTH` arrays and objects is refused (a RequestError naming the limit) before `json` sees it, as TF
Serving's JSON parser refuses one past its limit; a big body's arrays of numbers are found without recursion and
check their own depth before their shape is read. Each step is then linear in the body too.
"""

import json
import re
from typing import Any, Iterator, Union

import numpy as np

from experiments_manager.serving.errors import RequestError

BIG_BODY_BYTES = 1 << 20  # smaller bodies: `json.loads`, whose cost is small at that size
MIN_TEXT_BYTES = 64 << 10  # smaller arrays inside a big body are parsed by `json` with the rest
WINDOW_BYTES = 256 << 10  # one step of the numbers' decoding (~20 ms of the GIL at worst)
MAX_STRINGS = 20_000  # a body with more strings (named rows, text) is parsed by `json` whole
MAX_DEPTH = 65  # arrays and objects nested in a body (its own object counts): a tensor of rank up to NumPy's 64

Raw = Union[bytes, bytearray]
_WHITESPACE = b" \t\n\r"
_NUMBER_CHARACTERS = b"0123456789.eE+-NaInfity"  # digits, and the letters of NaN and Infinity
_ARRAY_CHARACTERS = _NUMBER_CHARACTERS + b"[]," + _WHITESPACE
_SPACE = rb"[ \t\n\r]*+"
_NUMBER = rb"(?:-?+(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][-+]?+[0-9]++)?+|NaN|-?+Infinity)"
_NUMBERS = re.compile(_SPACE + _NUMBER + _SPACE + rb"(?:," + _SPACE + _NUMBER + _SPACE + rb")*+")
_LONG_INTEGER = re.compile(rb"-?[0-9]{19,}")
_MISPLACED = re.compile(rb"[0-9a-zA-Z.][ \t\n\r]+[-0-9a-zA-Z.]|[,\[][ \t\n\r]*,|,[ \t\n\r]*\]")
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_PLACEHOLDER = "\x00"  # a JSON string that holds U+0000 (only a body with a backslash could write one)


def check_depth(raw: Raw) -> None:
    """Refuses a body whose arrays and objects nest deeper than `MAX_DEPTH` (RequestError, 400), in time linear in
    its bytes and memory at most about its size: its escapes taken out (`\\\\` then `\\"`: JSON pairs backslashes
    from the left), its brackets and quotes kept, then window by window the brackets outside strings counted (a
    string is between a quote of odd and one of even rank; an unterminated one holds the rest)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    text = raw.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in raw else raw
    structure = text.translate(None, _NOT_STRUCTURE)  # brackets and quotes only
    depth, quotes = 0, 0
    for position in range(0, len(structure), WINDOW_BYTES):
        codes = np.frombuffer(structure, np.uint8, min(WINDOW_BYTES, len(structure) - position), position)
        quoted = codes == ord('"')
        outside = ((quotes + np.cumsum(quoted, dtype=np.int32)) & 1) == 0  # a closing quote's own place: even
        steps = (outside & ((codes == ord("[")) | (codes == ord("{")))).astype(np.int32) - (
            outside & ((codes == ord("]")) | (codes == ord("}"))))
        depths = depth + np.cumsum(steps, dtype=np.int32)
        if depths.max(initial=0) > MAX_DEPTH:
            raise _too_deep()
        depth, quotes = int(depths[-1]), (quotes + int(np.count_nonzero(quoted))) & 1


def _loads(raw: Raw) -> Any:
    """The JSON value of a body, its depth checked first (NaN and Infinity accepted, as TF Serving does);
    RequestError if malformed or nested deeper than `MAX_DEPTH`."""
    check_depth(raw)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(f"malformed JSON request body: {error}") from None
    except RecursionError:
        raise RequestError("malformed JSON request body: nested too deep") from None


def parse_body(raw: Raw) -> Any:
    """The JSON value of a request body, its large arrays of numbers left as `NumericText` (bodies over
    `BIG_BODY_BYTES` without backslashes and with at most `MAX_STRINGS` strings; others: `json.loads`); RequestError
    if malformed or nested deeper than `MAX_DEPTH`."""
    if len(raw) <= BIG_BODY_BYTES or b"\\" in raw or raw.count(b'"') > 2 * MAX_STRINGS:
        return _loads(raw)
    texts = list(_numeric_arrays(raw))
    if not texts:
        return _loads(raw)
    pieces, last = [], 0
    for index, text in enumerate(texts):
        pieces += [raw[last:text.start], b'"\\u0000%d"' % index]
        last = text.end
    rest = b"".join(pieces) + raw[last:]  # each array of numbers checks its own depth when decoded (`array`)
    return _put_back(_loads(rest), texts)


class NumericText:
    """A JSON array of numbers in a request body, kept as text until its input's dtype is known.

    Args:
        raw: the body.
        start, end: where the array's `[` and the byte after its `]` are in `raw`.

    Example:

    ```python
    text = NumericText(b'{"instances": [[1, 2], [3, 4]]}', 14, 30)
    text.kind             # 'i': integers only ('f' when a number has a fraction, exponent, NaN or Infinity)
    text.array(np.float32, "input")   # array([[1., 2.], [3., 4.]], dtype=float32)
    ```
    """

    def __init__(self, raw: Raw, start: int, end: int) -> None:
        self.raw, self.start, self.end = raw, start, end
        self._view = memoryview(raw)
        self.kind = "f" if any(raw.find(mark, start, end) >= 0 for mark in (b".", b"e", b"E", b"N", b"I")) else "i"

    def array(self, dtype: Any, name: str) -> np.ndarray:
        """The array, in `dtype` (a NumPy float or integer type); RequestError if the text is not a rectangular
        nested list of JSON numbers (`name`: the input, for the message)."""
        shape = self._checked_shape(name)
        wanted = np.dtype(dtype)
        parsed = wanted if wanted in (np.float32, np.float64, np.int64) else (
            np.float64 if self.kind == "f" else np.int64)
        values = np.empty(int(np.prod(shape)), parsed)
        filled = 0
        for text in self._number_windows():
            if not _NUMBERS.fullmatch(text):
                raise RequestError(f"malformed JSON request body: an invalid number in input {name!r}")
            if parsed == np.int64:
                _check_int64(text, name)
            numbers = np.fromstring(text, parsed, sep=",")
            if filled + len(numbers) > len(values):
                raise _ragged(name)
            values[filled:filled + len(numbers)] = numbers
            filled += len(numbers)
        if filled != len(values):
            raise _ragged(name)  # well-formed, but some lists are empty where the first is not
        values = values.reshape(shape)
        return values if values.dtype == wanted else values.astype(wanted)

    def _checked_shape(self, name: str) -> "tuple[int, ...]":
        """The shape its first element at each depth gives, once its brackets are checked to have exactly it."""
        structure = b"".join(self._slice(position, min(position + WINDOW_BYTES, self.end)).translate(
            None, _NUMBER_CHARACTERS + _WHITESPACE) for position in range(self.start, self.end, WINDOW_BYTES))
        if len(structure) - len(structure.lstrip(b"[")) >= MAX_DEPTH:  # before `_first_shape`, linear in depth
            raise _too_deep()
        shape = _first_shape(structure, self._first_list_is_empty())
        expected_row = _pattern(shape[1:])
        if structure[:1] != b"[" or structure[-1:] != b"]" or len(structure) != 2 + shape[0] * (
                len(expected_row) + 1) - (1 if shape[0] else 0):
            raise _misshapen(structure, self._windows(), name)
        rows_per_step = max(1, WINDOW_BYTES // (len(expected_row) + 1))
        step = (expected_row + b",") * rows_per_step
        for position in range(1, len(structure) - 1, len(step)):
            piece = structure[position:min(position + len(step), len(structure) - 1)]
            if piece != step[:len(piece)]:
                raise _misshapen(structure, self._windows(), name)
        return shape

    def _first_list_is_empty(self) -> bool:
        position = self.start
        while self.raw[position] in b"[" + _WHITESPACE:
            position += 1
        return self.raw[position] == ord("]")

    def _number_windows(self) -> Iterator[bytes]:
        """The numbers, brackets taken out, in windows cut after a comma (no number split)."""
        for window in self._windows():
            text = window.translate(None, b"[]").strip(_WHITESPACE + b",")
            if text:
                yield text

    def _windows(self) -> Iterator[bytes]:
        """The array's text in windows of about `WINDOW_BYTES`, each cut after a comma."""
        position = self.start
        while position < self.end:
            stop = min(position + WINDOW_BYTES, self.end)
            if stop < self.end:
                cut = self.raw.rfind(b",", position, stop)
                if cut < 0:  # no comma in a whole window: up to the next one
                    cut = self.raw.find(b",", stop, self.end)
                stop = cut + 1 if cut >= 0 else self.end
            yield self._slice(position, stop)
            position = stop

    def _slice(self, start: int, stop: int) -> bytes:
        return bytes(self._view[start:stop])  # one copy, from bytes or the bytearray the server read into


def _numeric_arrays(raw: Raw) -> Iterator[NumericText]:
    """The large arrays of numbers in a body without backslashes: between two strings (or before the first, or
    after the last), the first `[` whose matching `]` comes before the next string, with only numbers between."""
    bounds, position = [], -1
    while True:
        position = raw.find(b'"', position + 1)
        if position < 0:
            break
        bounds.append(position)
    edges = [-1, *bounds, len(raw)]
    for gap_start, gap_end in zip(edges[0::2], edges[1::2]):  # outside strings: from a closing quote to an opening
        if gap_end - gap_start < MIN_TEXT_BYTES:
            continue
        start = raw.find(b"[", gap_start + 1, gap_end)
        end = _matching_bracket(raw, start, gap_end) if start >= 0 else -1
        if end - start >= MIN_TEXT_BYTES:
            yield NumericText(raw, start, end)


def _matching_bracket(raw: Raw, start: int, limit: int) -> int:
    """The index after the `]` matching the `[` at `start`, when it comes before `limit` with only numbers,
    brackets, commas and blanks between; else -1."""
    depth = 0
    for position in range(start, limit, WINDOW_BYTES):
        window = raw[position:min(position + WINDOW_BYTES, limit)]
        depths = _depths(window, depth)
        closed = np.flatnonzero(depths == 0)
        length = int(closed[0]) + 1 if closed.size else len(window)
        if window[:length].translate(None, _ARRAY_CHARACTERS):
            return -1  # strings' quotes end a gap, so what is left is objects, literals (true, null) or junk
        if closed.size:
            return position + length
        depth = int(depths[-1])
    return -1


def _depths(window: Raw, depth: int) -> np.ndarray:
    """The bracket depth after each byte of `window`, starting from `depth`."""
    codes = np.frombuffer(window, np.uint8)
    return depth + np.cumsum((codes == ord("[")).astype(np.int32) - (codes == ord("]")), dtype=np.int32)


def _put_back(body: Any, texts: "list[NumericText]") -> Any:
    """`body` with each placeholder string replaced by its `NumericText` (without recursion: bodies nest deep)."""
    if isinstance(body, str) and body.startswith(_PLACEHOLDER):
        return texts[int(body[1:])]
    stack = [body]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in list(items):
            if isinstance(value, str) and value.startswith(_PLACEHOLDER):
                node[key] = texts[int(value[1:])]
            elif isinstance(value, (dict, list)):
                stack.append(value)
    return body


def _first_shape(structure: bytes, first_list_empty: bool) -> "tuple[int, ...]":
    """The shape of a nested list's first element at each depth, from its brackets and commas alone: of D levels,
    the first list at level L (0: the outermost) ends at the first run of D - L `]`, and its items are separated
    by D - L - 1 `]` and a comma. An innermost list looks the same empty or with one number: `first_list_empty`."""
    depth = len(structure) - len(structure.lstrip(b"["))
    sizes = []
    for level in range(depth):
        closing = b"]" * (depth - level)
        first = structure[level:structure.find(closing) + len(closing)]
        sizes.append(first.count(b"]" * (depth - level - 1) + b",") + 1)
    if first_list_empty:
        sizes[-1] = 0
    return tuple(sizes)


def _pattern(shape: "tuple[int, ...]") -> bytes:
    """The brackets and commas of a nested list of `shape` with its numbers taken out."""
    if not shape:
        return b""
    inner = _pattern(shape[1:])
    return b"[" + b",".join([inner] * shape[0]) + b"]"


def _misshapen(structure: bytes, windows: Iterator[bytes], name: str) -> RequestError:
    """Ragged when the brackets balance as one list and each comma separates two items, else malformed JSON
    (`windows`: the array's text, in windows cut after a comma)."""
    depth = 0
    for position in range(0, len(structure), WINDOW_BYTES):
        depths = _depths(structure[position:position + WINDOW_BYTES], depth)
        last = position + len(depths) >= len(structure)
        if depths.min() < 0 or (depths[:-1] == 0).any() or (not last and depths[-1] == 0):
            return RequestError(f"malformed JSON request body: unbalanced brackets in input {name!r}")
        depth = int(depths[-1])
    if depth or b"][" in structure:
        return RequestError(f"malformed JSON request body: unbalanced brackets or a missing comma in input {name!r}")
    if any(_MISPLACED.search(window) for window in windows):
        return RequestError(f"malformed JSON request body: a missing or extra comma in input {name!r}")
    return _ragged(name)


def _check_int64(text: bytes, name: str) -> None:
    for match in _LONG_INTEGER.finditer(text):
        if not -2**63 <= int(match.group()) < 2**63:
            raise RequestError(f"input {name!r}: cannot convert to int64: {match.group()[:40].decode()} is out of "
                               "its range")


def _too_deep() -> RequestError:
    return RequestError(f"malformed JSON request body: arrays and objects nested deeper than {MAX_DEPTH} levels (the "
                        "body's object and a tensor of rank up to 64, NumPy's limit)")


def _ragged(name: str) -> RequestError:
    return RequestError(f"input {name!r}: expected a rectangular nested list (ragged lists are refused)")
