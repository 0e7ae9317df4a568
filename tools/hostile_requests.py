"""Requests built to exhaust a model server: nesting, width, numbers, strings and mixes, about 1-2 MB each, for REST
and gRPC. Shared by `tests/e2e/test_serving_hostile.py` (each answered with a client error within a CPU bound) and
`tools/bench_json_decode.py` (decode time per MB).

Example:

```python
for name, body, status in rest_bodies():
    requests.post(url, data=body)     # answered `status` (400: refused; 200: a valid request, if an odd one)
```
"""

from __future__ import annotations

import json
from typing import Any, Iterator

PAD = b" " * (1 << 20)  # past 1 MiB: the big-body path of `json_numbers`
MIB = 1 << 20


def rest_bodies(model_input_rank: int = 2) -> Iterator[tuple[str, bytes, int]]:
    """(what, body, expected status) for a model with one float input of shape (None, 1)."""
    deep = 40_000
    yield "arrays nested 40 k deep, padded past 1 MiB", b'{"instances": ' + b"[" * deep + b"]" * deep + b"}" + PAD, 400
    yield "arrays nested 1 M deep, never closed", b'{"instances": ' + b"[" * MIB, 400
    yield "objects nested 200 k deep", b'{"instances": ' + b'{"a":' * 200_000 + b"1" + b"}" * 200_000 + b"}" + PAD, 400
    yield "strings and arrays nested 50 k deep", b'{"instances": ' + b'["x",' * 50_000 + b'"y"' + b"]" * 50_000 + b"}", 400
    yield "arrays nested 64 deep around 400 k numbers", (b'{"instances": ' + b"[" * 64 + b",".join([b"0"] * 400_000)
                                                          + b"]" * 64 + b"}" + PAD), 400
    yield "arrays nested 66 deep", b'{"instances": ' + b"[" * 66 + b"0" + b"]" * 66 + b"}", 400
    yield "an integer of 1 M digits", b'{"instances": [[' + b"1" * MIB + b"]]}", 200
    yield "a fraction of 1 M digits", b'{"instances": [[0.' + b"1" * MIB + b"]]}", 200
    yield "an exponent of 1 M digits", b'{"instances": [[1e' + b"1" * MIB + b"]]}", 200
    yield "an int64 input's integer of 1 M digits", b'{"instances": [[' + b"9" * MIB + b"]]}" + PAD, 200
    yield "600 k numbers in one flat list", b'{"instances": [' + b",".join([b"0"] * 600_000) + b"]}", 400
    yield "300 k ragged rows", b'{"instances": [' + b",".join([b"[0]", b"[0,0]"] * 150_000) + b"]}", 400
    yield "100 k extra keys", json.dumps({"instances": [[0.5]], **{f"k{i}": i for i in range(100_000)}}).encode(), 200
    yield "a 2 MB string of escapes", json.dumps({"instances": ["\u00e9\n" * 300_000]}).encode(), 400
    yield "300 k short strings", json.dumps({"instances": ["a"] * 300_000}).encode(), 400
    yield "50 k rows of NaN", b'{"instances": [' + b",".join([b"[NaN]"] * 50_000) + b"]}", 200
    yield "a signature name of 1 M brackets", json.dumps({"instances": [[0.5]], "signature_name": "[" * MIB}).encode(), 400
    yield "a 1 MB invalid number", b'{"instances": [[' + b"1-" * (MIB // 2) + b"]]}" + PAD, 400
    yield "1 M commas", b'{"instances": [[' + b"," * MIB + b"]]}", 400


def grpc_requests(model: str) -> Iterator[tuple[str, Any, str]]:
    """(what, PredictRequest or raw bytes, what the refusal says) for a model with one float input `input`."""
    from tensorflow.core.framework import types_pb2

    def request(dims: list[int], dtype: int = types_pb2.DT_FLOAT, name: str = "input", **values: Any) -> Any:
        return predict_request(model, dims, dtype, name, **values)

    strings = request([MIB, 1], types_pb2.DT_STRING, string_val=[b"x"] * MIB)
    yield "1 M one-byte strings for a float input", strings, "expected dtype float32"
    yield "100 k dims of size 1", request([1] * 100_000, float_val=[1.0]), "dimension"
    yield "1 MB of tensor_content for one value", request([1, 1], tensor_content=b"\0" * MIB), "tensor_content holds"
    yield "an input name of 1 MB", request([1, 1], name="x" * MIB, float_val=[1.0]), "input"
    many = request([1, 1], float_val=[1.0])
    for index in range(50_000):
        many.inputs[f"extra{index}"].CopyFrom(many.inputs["input"])
    yield "50 k inputs", many, "extra"
    nested = b"\x7b" * 100_000 + b"\x7c" * 100_000  # groups of unknown field 15 in groups: a recursive parser's end
    yield "unknown groups nested 100 k deep", nested, "undecodable"
    renamed = request([1, 1], float_val=[1.0])
    renamed.model_spec.name = "m" * MIB
    yield "a model name of 1 MB", renamed, "mmm ... mmm"


def predict_request(model: str, dims: list[int], dtype: int = 1, name: str = "input", **values: Any) -> Any:
    """A PredictRequest whose one TensorProto (`name`, of `dims` and `dtype`: 1 is DT_FLOAT) is built by hand, as a
    hostile client would: `values` name its fields (`float_val=[...]`, `tensor_content=b"..."`)."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
    from tensorflow_serving.apis import predict_pb2

    built = predict_pb2.PredictRequest()
    built.model_spec.name = model
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in dims]))
    for field, content in values.items():
        if field == "tensor_content":
            proto.tensor_content = content
        else:
            getattr(proto, field).extend(content)
    built.inputs[name].CopyFrom(proto)
    return built
