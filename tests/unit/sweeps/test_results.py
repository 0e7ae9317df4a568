"""sweeps/results.py: the loss-vs-hparams plot of a sweep whose choices mix numbers and other values."""

import matplotlib

matplotlib.use("Agg")

from experiments_manager.sweeps.results import _positions  # noqa: E402


def test_a_choice_mixing_none_and_numbers_gets_one_slot_per_value_numbers_first():
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    try:
        positions = _positions([64, None, 32, None, 64], axes)  # hp.choice("units", [None, 32, 64])
    finally:
        plt.close(figure)
    assert positions == {32: 0, 64: 1, "None": 2}
