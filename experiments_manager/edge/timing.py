"""How fast an exported model answers on this machine: timed calls, their percentiles, and the report's three
numbers (batch-1 latency p50 / p99, throughput at the training batch size). `tools/bench_edge.py` times with the same
calls.

Example:

```python
timed = timed_calls(model, {"input": x[:1]}, seconds=1.0)
timed.percentile(0.5), timed.cpu_ms     # (0.015, 0.016): wall ms of the median call, CPU ms per call
p50, p99, throughput = timings(model, batches, batch_size=50)
```
"""

import dataclasses
import time
from typing import TYPE_CHECKING

from experiments_manager.edge.formats import DEFAULT_TIMING_SECONDS

if TYPE_CHECKING:
    from experiments_manager.edge.formats import Arrays, Batch
    from experiments_manager.edge.runtime import EdgeModel


LEAST_CALLS = 20  # a latency percentile of fewer calls means little
WARM_UP_CALLS = 5  # allocation, first-call tracing


@dataclasses.dataclass
class TimedCalls:
    """The calls of one measure.

    Args:
        seconds: each call's wall time.
        cpu_seconds: this process' CPU time over all of them.

    Example:

    ```python
    TimedCalls([0.001, 0.002], 0.003).percentile(0.5)   # 2.0 (ms)
    ```
    """

    seconds: list[float]
    cpu_seconds: float

    def percentile(self, fraction: float) -> float:
        """The call time (ms) below which `fraction` of the calls fall.

        Args:
            fraction: 0.5 for the median, 0.99 for p99.

        Example:

        ```python
        timed.percentile(0.99)
        ```
        """
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1e3

    @property
    def cpu_ms(self) -> float:
        """CPU ms per call."""
        return self.cpu_seconds / len(self.seconds) * 1e3


def timed_calls(model: "EdgeModel", inputs: "Arrays", seconds: float = DEFAULT_TIMING_SECONDS) -> TimedCalls:
    """`model.predict(inputs)` called for `seconds` (at least `LEAST_CALLS` times) after a warm-up.

    Args:
        model: an `EdgeModel` (runtime.py).
        inputs: {input name: array}.
        seconds: how long (default `DEFAULT_TIMING_SECONDS`).

    Example:

    ```python
    timed_calls(LiteRTModel(path), {"input": x}, 0.5).percentile(0.5)
    ```
    """
    for _ in range(WARM_UP_CALLS):
        model.predict(inputs)
    durations: list[float] = []
    cpu_started = time.process_time()
    deadline = time.perf_counter() + seconds
    while len(durations) < LEAST_CALLS or time.perf_counter() < deadline:
        started = time.perf_counter()
        model.predict(inputs)
        durations.append(time.perf_counter() - started)
    return TimedCalls(durations, time.process_time() - cpu_started)


def timings(model: "EdgeModel", batches: "list[Batch]", batch_size: int,
            seconds: float = DEFAULT_TIMING_SECONDS) -> tuple[float, float, float]:
    """(batch-1 latency p50 ms, p99 ms, samples/s at `batch_size`) of `model`, `seconds` each.

    Args:
        model: an `EdgeModel`.
        batches: the validation batches, [(inputs, labels)]; the first one's first sample is timed, then
            `batch_size` samples of them (the first one's rows repeated when it is smaller).
        batch_size: the training batch size: every row of the report is timed at it.
        seconds: how long each of the two measures runs (default `DEFAULT_TIMING_SECONDS`).

    Example:

    ```python
    p50, p99, throughput = timings(model, batches, 50, seconds=0.5)
    ```
    """
    import numpy as np

    whole = batches[0][0]
    single = timed_calls(model, {name: value[:1] for name, value in whole.items()}, seconds)
    rows = len(next(iter(whole.values())))
    picked = np.arange(batch_size) % rows
    batch = timed_calls(model, {name: value[picked] for name, value in whole.items()}, seconds)
    return single.percentile(0.5), single.percentile(0.99), batch_size * len(batch.seconds) / sum(batch.seconds)
