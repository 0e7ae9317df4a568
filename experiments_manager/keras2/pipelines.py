"""What `get_input_pipeline` may return, as the `tf.data.Dataset` the trainer fits on.

A `tf.data.Dataset` passes through unchanged. Settings written for Keras 2
also return Keras 2 data iterators: a `keras.utils.Sequence` (Keras 3's
`PyDataset`), the iterators of `ImageDataGenerator().flow(...)` /
`flow_from_directory(...)`, or a Python generator. Keras 3 iterates those
differently from Keras 2 (a `PyDataset` keeps its position across epochs and
ends an epoch with "Your input ran out of data" when its length runs out), so
they are turned into datasets with the semantics the original framework had
with Keras 2 (measured against `tf_keras`, tests/e2e/test_keras2_settings.py):

- an epoch is `nb_train_samples // batch_size` batches (`nb_val_samples` for
  validation), else `iterator.n // batch_size` for iterators that know their
  sample count `n` (the original framework's rule), else `len(sequence)`;
- every epoch (and every validation) starts a fresh pass over the sequence;
  a pass longer than an epoch is cut, a shorter one continues with the next
  pass instead of running out; `on_epoch_end()` runs after every pass;
- training takes the batches of a pass in a shuffled order (Keras 2's
  `fit(shuffle=True)`, which the original framework passed), seeded by the
  run's seed; validation takes them in order;
- a Python generator is read on from where it stopped (Keras 2 did not
  restart generators), so its validation batches differ from epoch to epoch.

One deliberate difference: where an epoch is longer than the sequence,
Keras 2 stopped training after the first epoch ("Your input ran out of
data"); here the epoch goes on with the next pass.
"""

import itertools
import logging
from typing import Any, Iterator, Optional, cast

import numpy as np

from experiments_manager.utils.errors import UserInputError

_LOG = logging.getLogger(__name__)


class Pipeline:
    """A settings pipeline as a dataset.

    Attributes:
        dataset: the `tf.data.Dataset`.
        steps: the batches of an epoch the source implies, or None (a
            dataset's own length, or the settings' nb_*_samples, decides).
        restartable: False when every new iteration continues where the last
            one stopped (a Python generator).
    """

    def __init__(self, dataset: Any, steps: Optional[int] = None, restartable: bool = True) -> None:
        self.dataset = dataset
        self.steps = steps
        self.restartable = restartable


def as_pipeline(returned: Any, settings: Any, training: bool, seed: int = 0, whole: bool = False) -> Pipeline:
    """The `Pipeline` of what `get_input_pipeline` returned.

    Args:
        returned: a `tf.data.Dataset`, a Keras `Sequence`/`PyDataset`, or a
            Python generator/iterator of batches.
        settings: the loaded `Settings` (nb_*_samples, batch_size, file name for errors; `Any`: keras2 imports no
            settings).
        training: the training pipeline (shuffled batch order), else validation.
        seed: the run's seed (batch order of a training sequence).
        whole: read a sequence or generator once, whole, whatever `nb_val_samples` says (default False; a test
            set's evaluation).

    Raises:
        UserInputError: anything else, or an empty sequence.
    """
    import keras
    import tensorflow as tf

    kind = "training" if training else "validation"
    if isinstance(returned, tf.data.Dataset):
        return Pipeline(returned)
    nb_samples = settings.data.train_samples if training else settings.data.val_samples
    if isinstance(returned, keras.utils.PyDataset) or _is_sequence(returned):
        length = len(returned)
        if length == 0:
            raise UserInputError(f"{settings.path.name}: get_input_pipeline: the {kind} {type(returned).__name__} "
                                 "is empty (len() == 0)")
        signature = _signature(_as_batch(returned[0]))
        if whole:  # every batch once, in order, the last partial one too
            return Pipeline(tf.data.Dataset.from_generator(
                lambda: (_as_batch(returned[index]) for index in range(length)), output_signature=signature))
        # an int here; Optional for the generator's below (None without nb_*_samples)
        steps: Optional[int] = _sequence_steps(returned, nb_samples, settings.training.batch_size, length)
        order = np.random.default_rng(seed if training else None)

        def epochs() -> Iterator[Any]:
            while True:  # one epoch of `steps` batches per round: Keras keeps the iterator across epochs
                yield from _epoch_batches(returned, cast(int, steps), length, order if training else None)

        dataset = tf.data.Dataset.from_generator(epochs, output_signature=signature).apply(
            tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
        _LOG.info("%s: %s data: a %s of %d batches, %d per epoch (Keras 2 semantics)", settings.path.name, kind,
                  type(returned).__name__, length, steps)
        return Pipeline(dataset, steps)
    if hasattr(returned, "__next__"):
        first = _as_batch(next(returned))
        stream = itertools.chain([first], (_as_batch(batch) for batch in returned))
        dataset = tf.data.Dataset.from_generator(lambda: stream, output_signature=_signature(first))
        steps = samples_to_steps(nb_samples, settings.training.batch_size) if nb_samples and not whole else None
        return Pipeline(dataset, steps, restartable=False)
    raise UserInputError(f"{settings.path.name}: get_input_pipeline: expected a tf.data.Dataset, a "
                         f"keras.utils.Sequence or a generator of batches for {kind}, got {type(returned).__name__}")


def _is_sequence(value: Any) -> bool:
    """A Keras 2-style sequence that does not derive from Keras 3's PyDataset."""
    return hasattr(value, "__getitem__") and hasattr(value, "__len__") and hasattr(value, "on_epoch_end")


def samples_to_steps(nb_samples: int, batch_size: int) -> int:
    """The batches of an epoch of `nb_samples` samples: `nb_samples // batch_size`, at least 1."""
    return max(1, nb_samples // batch_size)


def _sequence_steps(sequence: Any, nb_samples: Optional[int], batch_size: int, length: int) -> int:
    if nb_samples:
        return samples_to_steps(nb_samples, batch_size)
    samples, per_batch = getattr(sequence, "n", None), getattr(sequence, "batch_size", None)
    if isinstance(samples, int) and isinstance(per_batch, int) and samples >= per_batch > 0:
        return samples // per_batch  # the original framework's `train_data.n // batch_size`
    return length


def _epoch_batches(sequence: Any, steps: int, length: int, order: Optional[np.random.Generator]) -> Iterator[Any]:
    """The batches of one epoch: passes over the sequence, cut at `steps`, `on_epoch_end()` after each."""
    given = 0
    while given < steps:
        indices = order.permutation(length) if order is not None else range(length)
        for index in indices[: steps - given]:
            yield _as_batch(sequence[int(index)])
        given += min(length, steps - given)
        sequence.on_epoch_end()


def _as_batch(batch: Any) -> Any:
    """Keras 2 accepted [x, y] as well as (x, y)."""
    return tuple(batch) if isinstance(batch, list) else batch


def _signature(batch: Any) -> Any:
    import tensorflow as tf

    def spec(value: Any) -> Any:
        array = np.asarray(value)
        return tf.TensorSpec((None,) + array.shape[1:], tf.as_dtype(array.dtype))

    return tf.nest.map_structure(spec, batch)
