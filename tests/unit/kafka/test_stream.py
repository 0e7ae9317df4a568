"""The training stream's shuffle pool and resume positions (no broker needed)."""

import numpy as np

import pytest

from experiments_manager.kafka.position import StreamPosition
from experiments_manager.kafka.shuffle_pool import ShufflePool


def fill(pool, first, count, partition=0):
    offsets = np.arange(first, first + count, dtype=np.int64)
    pool.add([offsets.astype(np.float32)], np.full(count, partition, np.int32), offsets)


@pytest.mark.claim('batches are shuffled in a bounded pool')
def test_shuffle_pool_hands_out_every_record_once_in_shuffled_batches():
    pool = ShufflePool(capacity=100, batch_size=10, seed=0)
    taken = []
    for first in range(0, 1000, 64):
        fill(pool, first, min(64, 1000 - first))
        while pool.spare_batches(draining=False):
            taken.append(pool.take(10)[0])
    assert pool.size >= 100  # the shuffling reserve stays until draining
    while pool.spare_batches(draining=True):
        taken.append(pool.take(10)[0])
    values = np.concatenate(taken)
    assert sorted(values.tolist()) == list(range(1000))
    assert values.tolist() != list(range(1000))


def test_without_shuffling_records_leave_in_read_order():
    pool = ShufflePool(capacity=0, batch_size=4, seed=0)
    fill(pool, 0, 10)
    assert pool.take(4)[0].tolist() == [0, 1, 2, 3]
    assert pool.take(4)[0].tolist() == [4, 5, 6, 7]
    partitions, offsets = pool.snapshot()
    assert offsets.tolist() == [8, 9]


def test_position_commits_the_lowest_waiting_offset_and_round_trips_through_json():
    position = StreamPosition({0: 500, 1: 80}, {0: [120, 499]})
    assert position.committed() == {0: 120, 1: 80}
    restored = StreamPosition.from_json(position.as_json())
    assert restored.next == {0: 500, 1: 80} and restored.waiting[0].tolist() == [120, 499]
    assert StreamPosition.from_json({"positions": {"0": 7}}).committed() == {0: 7}  # a group's committed offset


@pytest.mark.claim(
    '`train --resume` continues from the checkpointed position, trains every record at least once, skips what the '
    'checkpoint had trained on')
def test_a_resumed_stream_skips_records_the_checkpoint_had_trained_on():
    position = StreamPosition({0: 10}, {0: [3, 7]})
    offsets = np.arange(2, 13, dtype=np.int64)
    values = [f"record {offset}" for offset in offsets]
    kept, partitions, kept_offsets = position.drop_trained(values, np.zeros(len(offsets), np.int32), offsets)
    assert kept_offsets.tolist() == [3, 7, 10, 11, 12]
    assert kept == ["record 3", "record 7", "record 10", "record 11", "record 12"]
