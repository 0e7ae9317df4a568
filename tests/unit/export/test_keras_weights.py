"""Each version's Keras weights file: written without the optimizer, read back by Keras' own walk into a model
rebuilt in a process that numbered its layers differently, differences named by Keras' variable paths before
anything is assigned."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from experiments_manager.export.keras_weights import (WEIGHTS_FILE, WeightsDiffer, differences, has_weights_file,
                                                      read_weights_file, write_weights_file)


def sequential(outputs: int = 1):
    import keras

    return keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.BatchNormalization(), keras.layers.Dense(outputs)])


def test_a_sequential_model_comes_back_by_keras_walk_without_the_optimizer(tmp_path: Path) -> None:
    import keras

    trained = sequential()
    trained.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    trained.fit(x, x[:, :1], epochs=1, verbose=0)
    write_weights_file(trained, tmp_path)
    assert has_weights_file(tmp_path)
    with h5py.File(tmp_path / WEIGHTS_FILE, "r") as file:
        assert "optimizer" not in file  # its slots serve nothing
    keras.layers.Dense(3)  # the rebuilt model's layers get other automatic names than the trained one's
    rebuilt = sequential()
    read_weights_file(tmp_path, rebuilt)
    np.testing.assert_array_equal(rebuilt.predict(x, verbose=0), trained.predict(x, verbose=0))


def test_a_new_head_is_named_and_refused_before_anything_is_assigned(tmp_path: Path) -> None:
    source = sequential()
    write_weights_file(source, tmp_path)
    head = sequential(outputs=3)
    before = [np.asarray(weight).copy() for weight in head.weights]
    found = differences(tmp_path / WEIGHTS_FILE, head)
    assert [line.split(": ", 1)[1] for line in found] == ["expected the new model's shape (8, 3), got (8, 1)",
                                                         "expected the new model's shape (3,), got (1,)"]
    assert found[0].split(": ")[0].endswith("/kernel") and found[1].split(": ")[0].endswith("/bias"), found
    with pytest.raises(WeightsDiffer, match=r"kernel: expected the new model's shape \(8, 3\), got \(8, 1\) "
                                            r"\(1 more weight differs\)"):
        read_weights_file(tmp_path, head)
    for weight, initial in zip(head.weights, before):  # `--init-from` then matches the blocks (block_matching)
        np.testing.assert_array_equal(np.asarray(weight), initial)



def test_a_weight_is_named_by_the_blocks_the_code_named_not_by_kerass_numbers(tmp_path: Path) -> None:
    import keras

    class Pretraining(keras.Model):
        def __init__(self, outputs: int) -> None:
            super().__init__()
            self.projector = keras.Sequential([keras.layers.Dense(outputs)])  # Keras numbers it `sequential_N`

        def call(self, x):  # type: ignore[no-untyped-def]
            return self.projector(x)

    x = np.ones((2, 4), np.float32)
    source, new = Pretraining(3), Pretraining(5)
    source(x), new(x)
    write_weights_file(source, tmp_path)
    found = differences(tmp_path / WEIGHTS_FILE, new)
    dense = new.projector.layers[0].name  # a layer of a list: its name, as `model.summary()` shows it
    assert [line.split(": ")[0] for line in found] == [f"projector/{dense}/kernel", f"projector/{dense}/bias"], found
