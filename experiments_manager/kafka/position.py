"""Resume positions of the training stream, as saved in checkpoints and committed to the consumer group.

A `StreamPosition` says, per partition, the next offset to read and the
offsets below it read but not yet trained on (still in the shuffle pool); a
resumed run starts there and skips what was already trained on: at-least-once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, TypeVar

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

_Value = TypeVar("_Value")


def waiting_by_partition(partitions: NDArray[Any], offsets: NDArray[Any]) -> dict[int, NDArray[Any]]:
    """partition -> sorted offsets."""
    return {int(partition): np.sort(offsets[partitions == partition]) for partition in np.unique(partitions)}


class StreamPosition:
    """Where a resumed run must start reading so that no record is lost or trained on twice.

    Per partition: `next`, the first offset not read yet, and `waiting`, the
    offsets below it that were read but not trained on (still in the shuffle
    pool). Kafka's committed offset can only say "everything below N is done":
    that is `committed()`, the lowest waiting offset; the checkpoint keeps the
    full position, so a resumed run skips what was already trained.

    Args:
        next_offsets: dict partition -> first offset not read.
        waiting: dict partition -> sorted array of read, untrained offsets.
    """

    def __init__(self, next_offsets: Optional[Mapping[int, int]] = None,
                 waiting: Optional[Mapping[int, Iterable[int] | NDArray[Any]]] = None) -> None:
        self.next = dict(next_offsets or {})
        self.waiting = {partition: np.asarray(offsets, np.int64) for partition, offsets in (waiting or {}).items()}

    def committed(self) -> dict[int, int]:
        """partition -> the offset to commit to the consumer group (everything below is trained on)."""
        return {
            partition: int(self.waiting[partition][0]) if len(self.waiting.get(partition, ())) else offset
            for partition, offset in self.next.items()
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "positions": {str(p): o for p, o in self.committed().items()},
            "next": {str(p): o for p, o in self.next.items()},
            "waiting": {str(p): [int(o) for o in offsets] for p, offsets in self.waiting.items() if len(offsets)},
        }

    @classmethod
    def from_json(cls, state: Optional[Mapping[str, Any]]) -> StreamPosition:
        """From `as_json()`; a state with only "positions" (committed offsets) starts there."""
        state = state or {}
        next_offsets = {int(p): int(o) for p, o in state.get("next", state.get("positions", {})).items()}
        waiting = {int(p): sorted(int(o) for o in offsets) for p, offsets in state.get("waiting", {}).items()}
        return cls(next_offsets, waiting)

    def drop_trained(self, values: list[_Value], partitions: NDArray[Any],
                     offsets: NDArray[Any]) -> tuple[list[_Value], NDArray[Any], NDArray[Any]]:
        """Filters out records a resumed run already trained on (below `next`, not waiting)."""
        keep = np.ones(len(offsets), bool)
        for partition, waiting in self.waiting.items():
            below = (partitions == partition) & (offsets < self.next[partition])
            if below.any():
                keep &= ~(below & ~np.isin(offsets, waiting))
        if keep.all():
            return values, partitions, offsets
        return [value for value, kept in zip(values, keep) if kept], partitions[keep], offsets[keep]
