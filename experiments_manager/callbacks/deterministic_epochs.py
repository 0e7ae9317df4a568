"""`deterministic = True`: each epoch starts from a random state that depends on (seed, epoch) only."""

from collections.abc import Iterator
from typing import Any, Optional

import keras

# Keras 3.15's `fit` creates two iterators of the training dataset per epoch (the epoch's, and one it does not
# read), and a `Dataset.shuffle(reshuffle_each_iteration=True)` draws its order from the count of iterators created:
# epoch e reads the order of iterator 2e. tests/e2e/test_deterministic.py fails when a Keras version changes this.
KERAS_ITERATORS_PER_EPOCH = 2


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed epoch `epoch` (from 0) starts from."""
    return (int(seed) * 1_000_003 + int(epoch)) % (2**31 - 1)


class DeterministicEpochs(keras.callbacks.Callback):
    """Sets Python's, NumPy's, TensorFlow's and every layer's random state from (seed, epoch) at each epoch's start.

    An uninterrupted run and one resumed at epoch k then draw the same numbers in epoch k (dropout masks,
    augmentations, anything seeded from the global generators). Place it first.

    Args:
        seed: the run's seed.

    Example:

    ```python
    model.fit(data, epochs=10, callbacks=[DeterministicEpochs(42), ...])
    ```
    """

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        seed = epoch_seed(self.seed, epoch)
        keras.utils.set_random_seed(seed)
        for index, generator in enumerate(_seed_generators(self.model)):
            generator.state.assign([seed, index])  # what a fresh SeedGenerator(seed) would hold, one per layer


def skip_epochs_of_shuffling(dataset: Any, epochs: int) -> None:
    """Advances `dataset`'s reshuffling by `epochs` epochs of `fit` (iterators created, none read): a resumed run's
    first epoch then reads the order the uninterrupted run's did."""
    import tensorflow as tf

    if not isinstance(dataset, tf.data.Dataset):  # nothing to advance: not a tf.data pipeline
        return
    for _ in range(KERAS_ITERATORS_PER_EPOCH * epochs):
        iter(dataset)


def _seed_generators(model: Any) -> Iterator[Any]:
    for layer in model._flatten_layers(include_self=True):
        yield from getattr(layer, "_seed_generators", ())
