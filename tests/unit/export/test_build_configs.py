"""A version records how each layer was built; a model rebuilt from its file builds, as recorded, the blocks only its
training step built (a Sequential without `keras.Input`), whatever names Keras numbered in this process."""

import json
from pathlib import Path

import numpy as np
import pytest

from experiments_manager.export.build_configs import BUILD_CONFIGS_FILE, build_as_recorded, write_build_configs


def pretraining_model():
    import keras

    class Pretraining(keras.Model):
        def __init__(self):
            super().__init__()
            self.encoder = keras.Sequential([keras.layers.Dense(6)])
            self.projector = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(2)])  # no Input

        def call(self, x):
            return self.encoder(x)

        def project(self, x):  # what only its training step calls
            return self.projector(self.encoder(x))

    return Pretraining()


def test_the_blocks_only_training_built_are_built_as_recorded_then_take_the_weights(tmp_path: Path) -> None:
    trained = pretraining_model()
    x = np.ones((3, 5), np.float32)
    trained.project(x)
    trained(x)
    write_build_configs(tmp_path, trained)
    recorded = json.loads((tmp_path / BUILD_CONFIGS_FILE).read_text())
    assert recorded["1:Sequential"] == {"input_shape": [3, 6]} and recorded["1:Sequential/1:Dense"] == {
        "input_shape": [3, 4]}, recorded
    trained.save_weights(str(tmp_path / "model.weights.h5"))

    rebuilt = pretraining_model()  # other automatic names: places, not names, are recorded
    rebuilt(x)  # what its served function builds
    assert not rebuilt.projector.built
    assert build_as_recorded(rebuilt, tmp_path) == ["1:Sequential"]
    rebuilt.load_weights(str(tmp_path / "model.weights.h5"))
    np.testing.assert_array_equal(rebuilt.project(x), trained.project(x))
    assert build_as_recorded(rebuilt, tmp_path) == []  # built: nothing to do


def test_a_version_without_the_record_builds_nothing_and_its_weights_check_names_the_unbuilt_block(
        tmp_path: Path) -> None:
    from experiments_manager.export.keras_weights import WeightsDiffer, read_weights_file, write_weights_file

    trained = pretraining_model()
    x = np.ones((3, 5), np.float32)
    trained.project(x)
    trained(x)
    write_weights_file(trained, tmp_path)  # an earlier engine's version: its weights, no build configs
    rebuilt = pretraining_model()
    rebuilt(x)
    assert build_as_recorded(rebuilt, tmp_path) is None and not rebuilt.projector.built
    with pytest.raises(WeightsDiffer) as differ:
        read_weights_file(tmp_path, rebuilt)
    assert str(differ.value).startswith(  # the block by the name the code gave it, not Keras' `sequential_1`
        "projector: expected a block built as in the version (its 4 weights, the first of shape (6, 4)), "
        "got one the rebuilt model left unbuilt"), differ.value
