"""serving/request_budget.py and the Predictor's slices: big requests share a budget in arrival order, one kept
waiting too long is refused with UNAVAILABLE / 503, a cancelled wait gives back what it got; a request of many rows
goes through the model in slices whose outputs are those of one call."""

import asyncio
import threading

import grpc
import numpy as np
import pytest

from experiments_manager.serving.errors import RequestError
from experiments_manager.serving.predictor import Predictor
from experiments_manager.serving.request_budget import BIG_REQUEST_BYTES, RequestBudget

MB = 1 << 20


def test_requests_over_the_budget_wait_in_arrival_order_and_small_ones_never_wait():
    budget = RequestBudget(10 * MB, wait_seconds=5)
    order, entered = [], threading.Event()

    def request(name, size, hold):
        with budget.share(size):
            order.append(name)
            entered.set()
            hold.wait(5)

    first_done, second_done = threading.Event(), threading.Event()
    first = threading.Thread(target=request, args=("first", 8 * MB, first_done))
    first.start()
    assert entered.wait(5)
    second = threading.Thread(target=request, args=("second", 4 * MB, second_done))
    second.start()
    with budget.share(BIG_REQUEST_BYTES):  # a small request: not counted, never waits
        order.append("small")
    assert order == ["first", "small"]
    first_done.set()
    first.join(5)
    second_done.set()
    second.join(5)
    assert order == ["first", "small", "second"]
    with budget.share(10 * MB):  # everything given back
        pass


def test_a_request_kept_waiting_past_the_wait_is_refused_with_unavailable_and_503():
    budget = RequestBudget(10 * MB, wait_seconds=0.2)
    with budget.share(9 * MB):
        with pytest.raises(RequestError) as refused:
            with budget.share(2 * MB):
                pass
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE and refused.value.http_status == 503
    assert "--request-memory-budget" in refused.value.message
    with budget.share(10 * MB):  # the refused request took nothing
        pass


def test_a_cancelled_wait_on_the_event_loop_takes_nothing_and_a_larger_request_than_the_budget_runs_alone():
    async def scenario():
        budget = RequestBudget(10 * MB, wait_seconds=5)
        async with budget.share_async(6 * MB):
            waiting = asyncio.create_task(budget.share_async(6 * MB).__aenter__())
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        async with budget.share_async(30 * MB):  # more than the budget: waits for all of it, then runs
            async with budget.share_async(BIG_REQUEST_BYTES):
                pass
        async with budget.share_async(10 * MB):
            pass

    asyncio.run(asyncio.wait_for(scenario(), 10))


class _Recording:
    """A servable whose model doubles its input, recording each call's rows."""

    def __init__(self, batch_major=True):
        self.calls, self.batch_major = [], batch_major

    def call(self, key, arrays, output_filter=()):
        x = arrays["x"]
        self.calls.append(len(x))
        doubled = {"y": x * 2, "ids": np.arange(len(x)) + 100 * len(self.calls)}
        return doubled if self.batch_major else {"total": np.asarray(x.sum())}


@pytest.mark.parametrize("rows", [1, 7, 8, 9, 100])
def test_a_request_of_more_rows_than_a_slice_goes_through_the_model_in_slices(rows):
    predictor = Predictor(versions=None, executor=None, max_rows_per_call=8)
    servable = _Recording()
    x = np.random.default_rng(20261125).normal(size=(rows, 3)).astype(np.float32)
    outputs = predictor._call(servable, "serving_default", {"x": x})
    assert servable.calls == [min(8, rows - start) for start in range(0, rows, 8)]
    np.testing.assert_array_equal(outputs["y"], x * 2)
    assert outputs["ids"].shape == (rows,)
    whole = _Recording(batch_major=False)  # outputs not batch-major: the model needs the request whole
    assert predictor._call(whole, "serving_default", {"x": x})["total"] == pytest.approx(x.sum(), rel=1e-5)
    assert whole.calls[-1] == rows
