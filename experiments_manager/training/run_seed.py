"""A run's seed: the one its settings give (or a resume recorded), else drawn; set before its inputs and its model."""

from __future__ import annotations

import random
from typing import Optional


def run_seed(given: Optional[int]) -> int:
    """`given` (the settings' `random_seed`, or the seed a resumed run recorded), else a seed drawn from the
    system's randomness (recorded in run.json, so a resume and `train` of the trial's command reproduce it)."""
    return given if given is not None else random.SystemRandom().randrange(2**31)


def set_run_seed(seed: int, deterministic: bool = False) -> None:
    """Seeds Python's, NumPy's and TensorFlow's generators (`keras.utils.set_random_seed`) and, when
    `deterministic` (the settings' `deterministic`), makes TensorFlow's ops deterministic. Call it before the inputs
    and the model are made: the order training has always had.

    Args:
        seed: the run's seed (`run_seed`).
        deterministic: whether the run asks for reproducible ops (default False).

    Example:

    ```python
    set_run_seed(run_seed(settings.runtime.random_seed), settings.runtime.deterministic)
    ```
    """
    import keras

    keras.utils.set_random_seed(seed)
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
