"""The shuffle pool: records read from the training topic wait here, with their partition and offset, to be batched.

Knowing the offsets still in the pool is what lets a checkpoint record a
position that loses no record (see `kafka.position`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence, cast

import numpy as np

from experiments_manager.kafka.reader import CHUNK_RECORDS

if TYPE_CHECKING:
    from numpy.typing import NDArray


class ShufflePool:
    """Records waiting to be batched; batches are uniform picks among the pool.

    Keeps `capacity` records back for shuffling, in preallocated arrays
    together with their partition and offset, so the offsets still waiting
    are known for every partition.

    Args:
        capacity: records kept back for shuffling (0: no shuffling, first in first out).
        batch_size: records per batch.
        seed: seed of the random picks.
    """

    def __init__(self, capacity: int, batch_size: int, seed: Optional[int]) -> None:
        self.capacity = int(capacity)
        self.batch_size = batch_size
        self.shuffle = capacity > 1
        self.rng = np.random.default_rng(seed)
        self.size = 0
        self.arrays: Optional[list[NDArray[Any]]] = None
        self.partitions = np.zeros(0, np.int32)
        self.offsets = np.zeros(0, np.int64)

    def spare_batches(self, draining: bool) -> int:
        """Whole batches that can be taken now: beyond the shuffling reserve, or all of them when draining."""
        return max(0, self.size if draining else self.size - self.capacity) // self.batch_size

    def add(self, leaves: Sequence[NDArray[Any]], partitions: NDArray[Any], offsets: NDArray[Any]) -> None:
        count = len(offsets)
        self._reserve(self.size + count, leaves)
        end = self.size + count
        assert self.arrays is not None  # made by _reserve
        for array, leaf in zip(self.arrays, leaves):
            array[self.size:end] = leaf
        self.partitions[self.size:end] = partitions
        self.offsets[self.size:end] = offsets
        self.size = end

    def _reserve(self, needed: int, leaves: Sequence[NDArray[Any]]) -> None:
        if self.arrays is not None and len(self.offsets) >= needed:
            return
        room = max(needed, 2 * len(self.offsets), self.capacity + CHUNK_RECORDS)
        old = self.size

        def grown(array: Optional[NDArray[Any]], like: NDArray[Any]) -> NDArray[Any]:
            bigger = np.empty((room,) + like.shape[1:], like.dtype)
            if array is not None:
                bigger[:old] = array[:old]
            return bigger

        self.arrays = [grown(None if self.arrays is None else array, leaf)
                       for array, leaf in zip(self.arrays or cast("list[Optional[NDArray[Any]]]", [None] * len(leaves)),
                                              leaves)]
        self.partitions = grown(self.partitions, self.partitions)
        self.offsets = grown(self.offsets, self.offsets)

    def take(self, count: int) -> list[NDArray[Any]]:
        """Removes `count` records; returns their field-ordered arrays."""
        size = self.size
        assert self.arrays is not None  # records were added: `count` > 0 are taken
        if self.shuffle:
            picked = self.rng.choice(size, count, replace=False)
            batch = [array[picked] for array in self.arrays]
            in_tail = np.zeros(count, bool)
            in_tail[picked[picked >= size - count] - (size - count)] = True
            holes, tail = picked[picked < size - count], np.arange(size - count, size)[~in_tail]
            for array in self.arrays + [self.partitions, self.offsets]:
                array[holes] = array[tail]  # the tail records not picked fill the holes
        else:
            batch = [array[:count].copy() for array in self.arrays]
            for array in self.arrays + [self.partitions, self.offsets]:
                array[:size - count] = array[count:size]
        self.size = size - count
        return batch

    def snapshot(self) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        """(partitions, offsets) of the records still in the pool (copies)."""
        return self.partitions[:self.size].copy(), self.offsets[:self.size].copy()
