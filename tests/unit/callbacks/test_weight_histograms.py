"""Weight histograms are counted with numpy into exactly the buckets `tf.summary.histogram` writes."""

import numpy as np
import pytest

from experiments_manager.callbacks.weight_histograms import histogram_buckets

SEED = 20
CASES = {
    "normal float64": lambda rng: rng.normal(size=1000),
    "float32 matrix": lambda rng: rng.normal(size=(17, 3)).astype(np.float32),
    "one value": lambda rng: np.full(7, 2.5),
    "empty": lambda rng: np.zeros(0),
    "integers": lambda rng: np.arange(10),
    "tiny range": lambda rng: rng.uniform(-1e-8, 1e-8, size=500).astype(np.float32),
    "two values": lambda rng: np.array([0.0, 1.0, 1.0]),
    # counted a part at a time (65 536 values): 3 whole parts and a partial one
    "several parts, float32": lambda rng: rng.standard_t(3, size=200_000).astype(np.float32),
    "float16": lambda rng: rng.normal(size=3000).astype(np.float16),
    "int64 beyond 2**53": lambda rng: rng.integers(-2**62, 2**62, size=1000),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.claim(
    "histograms are TensorBoard's own 30 buckets, counted with numpy (memory in proportion to the weight)",
    note="(10 seeded cases against `tf.summary.histogram`'s bucketing, one counted in several parts, float16, "
         'int64 beyond 2**53: equal arrays)')
def test_the_buckets_are_tensorboards_own(case):
    import tensorflow as tf
    from tensorboard.plugins.histogram import summary_v2

    print(f"seed {SEED}")
    values = CASES[case](np.random.default_rng(SEED))
    theirs = summary_v2._buckets(tf.constant(values)).numpy()  # what tf.summary.histogram writes
    assert np.array_equal(histogram_buckets(values), theirs)


@pytest.mark.claim(
    "histograms are TensorBoard's own 30 buckets, counted with numpy (memory in proportion to the weight)")
def test_nan_and_infinite_values_are_left_out():
    with_nan = histogram_buckets(np.array([0.0, np.nan, 1.0, np.inf, 1.0, -np.inf]))
    assert np.array_equal(with_nan, histogram_buckets(np.array([0.0, 1.0, 1.0])))
    assert with_nan[:, 2].sum() == 3
    assert not histogram_buckets(np.array([np.nan])).any()


def test_a_range_float64_cannot_hold_is_counted_not_raised():
    """A float64 weight spanning more than float64's range, or a denormal one: every value counted somewhere."""
    for values in (np.array([-1e308, 1e308, 0.0]), np.array([0.0, 5e-324, 1e-323])):
        buckets = histogram_buckets(values)
        assert buckets.shape == (30, 3) and buckets[:, 2].sum() == values.size
