"""Verified checkpoints: a damaged newest checkpoint (overwritten in place, truncated, without state.json) is moved
aside with one warning and the one before it is restored, bit for bit; numbers continue past every folder; pruning
keeps the newest good ones."""

import json

import numpy as np
import pytest

from experiments_manager.run.checkpointing import Checkpointer, verify


def _model(seed):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01, use_ema=True), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


@pytest.fixture
def three_checkpoints(tmp_path):
    """Checkpoints after epochs 1, 2 and 3 of a model whose weights differ each epoch; the weights of each."""
    checkpointer = Checkpointer(tmp_path / "checkpoints", keep=5)
    model, weights = _model(1), {}
    for epoch in (1, 2, 3):
        for variable in model.trainable_variables:
            variable.assign(np.full(variable.shape, float(epoch), dtype="float32"))
        checkpointer.save(model, model.optimizer, {"epochs_completed": epoch, "callbacks": {}})
        weights[epoch] = [variable.numpy() for variable in model.trainable_variables]
    return checkpointer, weights


def _damage(folder, how):
    if how == "weights overwritten in place":  # same size, other bytes: only a checksum tells
        path = folder / "model.weights.h5"
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle:middle + 64] = bytes(byte ^ 0xFF for byte in data[middle:middle + 64])
        path.write_bytes(bytes(data))
    elif how == "weights truncated":
        path = folder / "model.weights.h5"
        path.write_bytes(path.read_bytes()[:100])
    elif how == "optimizer missing":
        (folder / "optimizer.npz").unlink()
    elif how == "no state.json":
        (folder / "state.json").unlink()
    else:
        (folder / "state.json").write_text('{"epochs_comp')


@pytest.mark.parametrize("how", ["weights overwritten in place", "weights truncated", "optimizer missing",
                                 "no state.json", "state.json truncated"])
@pytest.mark.claim(
    'a damaged checkpoint (overwritten in place, truncated, a missing file, no state.json) is set aside with one '
    'warning; the previous one is restored bit for bit; numbers go on past it; pruning keeps good ones',
    note='(5 kinds of damage)')
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_previous_restored(three_checkpoints, how, caplog):
    checkpointer, weights = three_checkpoints
    newest = checkpointer.folder / "ckpt-000003"
    _damage(newest, how)
    assert verify(newest) is not None and verify(checkpointer.folder / "ckpt-000002") is None

    restored = _model(2)
    with caplog.at_level("WARNING", logger="experiments_manager"):
        state = checkpointer.restore_latest(restored, restored.optimizer)
    assert state["epochs_completed"] == 2
    for got, want in zip(restored.trainable_variables, weights[2]):
        np.testing.assert_array_equal(got.numpy(), want)
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "ckpt-000003: damaged (" in warnings[0] and "damaged-ckpt-000003" in warnings[0]
    assert not newest.exists() and (checkpointer.folder / "damaged-ckpt-000003").is_dir()

    # the next checkpoint takes a number past the one set aside; pruning keeps the newest good ones
    pruning = Checkpointer(checkpointer.folder, keep=2)
    saved = pruning.save(restored, restored.optimizer, {"epochs_completed": 3, "callbacks": {}})
    assert saved.name == "ckpt-000004"
    assert sorted(path.name for path in checkpointer.folder.iterdir()) == [
        "ckpt-000002", "ckpt-000004", "damaged-ckpt-000003"]


@pytest.mark.claim(
    'a damaged checkpoint (overwritten in place, truncated, a missing file, no state.json) is set aside with one '
    'warning; the previous one is restored bit for bit; numbers go on past it; pruning keeps good ones')
def test_numbers_continue_past_a_folder_without_state_json_and_pruning_keeps_the_good_ones(three_checkpoints):
    checkpointer, _ = three_checkpoints
    (checkpointer.folder / "ckpt-000004").mkdir()  # a copy that lost its state.json
    model = _model(3)
    saved = Checkpointer(checkpointer.folder, keep=1).save(model, model.optimizer, {"epochs_completed": 4})
    assert saved.name == "ckpt-000005"
    assert sorted(path.name for path in checkpointer.folder.iterdir()) == ["ckpt-000004", "ckpt-000005"]
    assert Checkpointer(checkpointer.folder).latest() == saved


def test_every_checkpoint_damaged_means_a_fresh_start_not_garbage(three_checkpoints):
    checkpointer, _ = three_checkpoints
    for number in (1, 2, 3):
        _damage(checkpointer.folder / f"ckpt-00000{number}", "weights overwritten in place")
    model = _model(4)
    assert checkpointer.restore_latest(model, model.optimizer) is None
    assert checkpointer.latest() is None


def test_state_json_records_each_file_size_and_sha256(three_checkpoints):
    checkpointer, _ = three_checkpoints
    state = json.loads((checkpointer.folder / "ckpt-000003" / "state.json").read_text())
    assert set(state["files"]) == {"model.weights.h5", "optimizer.npz"}
    for name, record in state["files"].items():
        assert record["size"] == (checkpointer.folder / "ckpt-000003" / name).stat().st_size
        assert len(record["sha256"]) == 64


def test_a_good_checkpoint_that_does_not_fit_the_model_is_one_line_not_set_aside(three_checkpoints):
    """The model changed (resumed with --accept-code-change after adding a layer): the checkpoint is intact, so it
    stays where it is, and the resume says why it cannot use it."""
    import keras

    from experiments_manager.utils.errors import UserInputError

    checkpointer, _ = three_checkpoints
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(4), keras.layers.Dense(1)])
    other.compile(optimizer=keras.optimizers.Adam(0.01, use_ema=True), loss="mse")
    other.optimizer.build(other.trainable_variables)
    with pytest.raises(UserInputError, match="ckpt-000003: does not fit the model"):
        checkpointer.restore_latest(other, other.optimizer)
    assert (checkpointer.folder / "ckpt-000003").is_dir()


@pytest.mark.parametrize("writer", ["this engine", "an earlier engine"])
@pytest.mark.claim('the checkpoint holds the EMA averages',
                   note="(the weights file without the optimizer, and an earlier engine's with it: every model and "
                        "optimizer variable restored exactly, no warning)")
def test_the_weights_file_leaves_the_optimizer_to_optimizer_npz(tmp_path, monkeypatch, writer):
    """The weights file holds the model's weights only (the optimizer's, three times their size, are in
    optimizer.npz); an earlier engine's, which holds the optimizer too, restores the same, with no warning."""
    import warnings

    import h5py

    from experiments_manager.run import checkpointing

    model = _model(1)
    rng = np.random.default_rng(0)
    for variable in model.optimizer.variables:
        variable.assign(rng.normal(size=variable.shape).astype(variable.dtype))
    if writer == "an earlier engine":
        monkeypatch.setattr(checkpointing, "left_out_of_weights_file", lambda model: [])
    state = {"epochs_completed": 1, "callbacks": {}}
    folder = Checkpointer(tmp_path / "checkpoints").save(model, model.optimizer, state)
    monkeypatch.undo()
    with h5py.File(folder / "model.weights.h5", "r") as weights:
        groups = list(weights)
    assert ("optimizer" in groups) == (writer == "an earlier engine") and "layers" in groups

    restored = _model(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras warns when it skips an optimizer it was given
        Checkpointer(tmp_path / "checkpoints").restore_latest(restored, restored.optimizer)
    every = [each.variables + each.optimizer.variables for each in (restored, model)]
    for got, want in zip(*every):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
