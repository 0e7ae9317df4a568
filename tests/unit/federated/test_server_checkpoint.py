"""federated/server_checkpoint.py: the global model and the records' state after a round, read back exactly; a damaged
file is one line."""

import numpy as np
import pytest

from experiments_manager.federated.server_checkpoint import (checkpoint_path, read_checkpoint, restore_strategy,
                                                             strategy_state, write_checkpoint)
from experiments_manager.run.experiment import Experiment
from experiments_manager.utils.errors import UserInputError

SEED = 7  # the weights' draw


def _state(rounds):
    return {"state_version": 2, "epochs_completed": rounds,
            "callbacks": {"best": {"value": 0.25, "epoch": 1}, "exports": {"requested": None, "best_version": 2}}}


def test_a_checkpoint_reads_back_its_weights_in_order_the_strategys_moments_and_the_state(tmp_path):
    experiment = Experiment(tmp_path)
    assert read_checkpoint(experiment) is None  # before the first round
    rng = np.random.default_rng(SEED)
    weights = [rng.random((3, 4), dtype=np.float32) for _ in range(12)] + [np.arange(5, dtype=np.int64)]

    class FedAdamLike:
        m_t = {"dense/kernel": rng.random((3, 4))}
        v_t = {"dense/kernel": rng.random((3, 4))}
        current_arrays = {"ignored": np.zeros(1)}  # set again from the global model every round

    write_checkpoint(experiment, weights, strategy_state(FedAdamLike()), _state(2))
    restored = read_checkpoint(experiment)
    assert restored is not None and restored.rounds == 2 and restored.state == _state(2)
    assert len(restored.weights) == len(weights) and all(
        np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(restored.weights, weights))
    assert set(restored.strategy) == {"m_t", "v_t"}
    assert np.array_equal(restored.strategy["m_t"]["dense/kernel"], FedAdamLike.m_t["dense/kernel"])
    assert strategy_state(object()) == {}  # FedAvg keeps nothing between rounds

    class FedAvgMLike:  # its server momentum: a list of arrays, back in its order
        momentum_vector = [rng.random(3) for _ in range(12)]

    write_checkpoint(experiment, weights, strategy_state(FedAvgMLike()), _state(2))
    resumed = type("Fresh", (), {"momentum_vector": None})()
    restore_strategy(resumed, read_checkpoint(experiment).strategy)
    assert len(resumed.momentum_vector) == 12 and all(
        np.array_equal(a, b) for a, b in zip(resumed.momentum_vector, FedAvgMLike.momentum_vector))
    write_checkpoint(experiment, weights[:1], {}, _state(3))  # replaced whole
    assert read_checkpoint(experiment).rounds == 3 and len(read_checkpoint(experiment).weights) == 1
    assert [path.name for path in experiment.checkpoints_dir.iterdir()] == ["global_model.npz"]  # no temporary left


@pytest.mark.parametrize("damage", ["flip", "truncate", "state"])
def test_a_damaged_checkpoint_is_one_line_naming_it(tmp_path, damage):
    experiment = Experiment(tmp_path)
    weights = [np.random.default_rng(SEED).random((256, 256), dtype=np.float32)]
    write_checkpoint(experiment, weights, {}, _state(0 if damage == "state" else 2))
    path = checkpoint_path(experiment)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF  # inside the weights' bytes: the zip's CRC tells
    elif damage == "truncate":
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    with pytest.raises(UserInputError) as refused:
        read_checkpoint(experiment)
    assert str(refused.value).startswith(f"{path}: damaged (") and str(refused.value).endswith(
        "the federation cannot continue from it; start a new one"), refused.value
