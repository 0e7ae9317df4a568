"""The batcher merges concurrent requests into fewer model calls and hands each caller its own rows."""

import threading

import numpy as np

import pytest

from experiments_manager.serving.batching import Batcher


class CountingModel:
    def __init__(self):
        self.calls = []
        self.gate = threading.Event()

    def __call__(self, arrays):
        self.gate.wait(5)  # hold the first call so the others queue up behind it
        self.calls.append(arrays["x"].shape[0])
        return {"y": arrays["x"] * 2, "rows": arrays["x"][:, :1]}


@pytest.mark.claim(
    '`--enable_batching` merges concurrent requests into one model call',
    note='(weak for the CLI flags: in-process options; the flags reach only the tensorflow_model_server launcher)')
def test_concurrent_requests_are_merged_and_split_back():
    model = CountingModel()
    batcher = Batcher(model, max_batch_size=8, timeout_seconds=0.05)
    try:
        futures = [batcher.submit({"x": np.full((1, 3), index, np.float32)}) for index in range(17)]
        model.gate.set()
        results = [future.result(timeout=10) for future in futures]
    finally:
        batcher.close()
    for index, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], np.full((1, 3), 2 * index))
    assert sum(model.calls) == 17
    assert max(model.calls) <= 8 and len(model.calls) <= 4, model.calls


def test_requests_of_other_shapes_wait_for_their_own_batch_and_errors_reach_each_caller():
    def model(arrays):
        if arrays["x"].shape[1] == 5:
            raise ValueError("five columns refused")
        return {"y": arrays["x"] + 1}

    batcher = Batcher(model, max_batch_size=32, timeout_seconds=0.05)
    try:
        small = batcher.submit({"x": np.zeros((2, 3))})
        wide = batcher.submit({"x": np.zeros((1, 5))})
        assert small.result(timeout=10)["y"].shape == (2, 3)
        try:
            wide.result(timeout=10)
            raise AssertionError("the refused request got an answer")
        except ValueError as error:
            assert "five columns" in str(error)
    finally:
        batcher.close()
