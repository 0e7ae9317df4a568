"""serving/tensors.py's answers: encoded in pieces (orjson for finite numbers), they read back as the values Python's
`json` writes for the whole answer, NaN and Infinity included; tensor_protos.py's serialized PredictResponse is the
one protobuf makes."""

import json
import math

import numpy as np
import pytest

from experiments_manager.serving import tensor_protos, tensors

SEED = 20261125


def _reference(outputs, row_format):
    """What the answer was before it came in pieces: `json.dumps` of nested lists (`tensors.json_value`)."""
    columns = {name: tensors.json_value(array, name) for name, array in outputs.items()}
    if not row_format:
        return {"outputs": next(iter(columns.values())) if len(columns) == 1 else columns}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    count = len(next(iter(outputs.values())))
    return {"predictions": [{name: column[index] for name, column in columns.items()} for index in range(count)]}


def _same(left, right):
    if isinstance(left, float) and isinstance(right, float):
        return left == right or (math.isnan(left) and math.isnan(right))
    if isinstance(left, (list, dict)):
        keys = left.keys() if isinstance(left, dict) else range(len(left))
        return type(left) is type(right) and len(left) == len(right) and all(_same(left[k], right[k]) for k in keys)
    return left == right


@pytest.mark.parametrize("rows", [0, 1, 5, tensors.ANSWER_VALUES + 3])
@pytest.mark.parametrize("row_format", [True, False])
def test_an_answer_in_pieces_reads_back_as_json_writes_the_whole_answer(rows, row_format):
    print(f"seed {SEED}")
    random = np.random.default_rng(SEED)
    probabilities = random.random((rows, 3)).astype(np.float32)
    probabilities[rows // 2:rows // 2 + 1, 0] = np.nan  # NaN and Infinity: written as TF Serving's literals
    probabilities[rows // 3:rows // 3 + 1, 1] = -np.inf
    outputs = {"probabilities": probabilities, "class": random.integers(0, 3, rows),
               "doubles": random.random(rows), "halves": random.random((rows, 2)).astype(np.float16),
               "flags": random.random(rows) > 0.5, "text_bytes": np.array([b"\xff\x00"] * rows, object),
               "label": np.array([b"cat"] * rows, object)}
    for chosen in (outputs, {"probabilities": probabilities}, {"class": outputs["class"]}):
        text = b"".join(tensors.rest_answer(chosen, row_format))
        assert _same(json.loads(text), json.loads(json.dumps(_reference(chosen, row_format)))), list(chosen)
    scalar = b"".join(tensors.rest_answer({"total": np.array(np.float32(0.1))}, False))
    assert json.loads(scalar) == {"outputs": float(np.float32(0.1))}


def test_a_predict_response_serialized_from_the_arrays_is_the_one_protobuf_makes():
    from tensorflow_serving.apis import model_pb2, predict_pb2

    spec = model_pb2.ModelSpec(name="m", signature_name="serving_default")
    spec.version.value = 3
    random = np.random.default_rng(SEED)
    outputs = {"f32": random.random((5, 3)).astype(np.float32), "f64": random.random(4),
               "ints": np.arange(6).reshape(2, 3), "text": np.array([b"x", b"yz"], object), "empty": np.zeros((0, 2), np.float32),
               "scalar": np.array(2.5, np.float32)}
    expected = predict_pb2.PredictResponse(model_spec=spec)
    for name, array in outputs.items():
        tensor_protos.proto_from_array(array, expected.outputs[name])
    assert predict_pb2.PredictResponse.FromString(tensor_protos.predict_response_bytes(spec, outputs)) == expected
