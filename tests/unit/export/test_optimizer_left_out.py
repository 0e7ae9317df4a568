"""Within `optimizer_left_out`, a SavedModel of a module holding the model has no optimizer; outside, as before."""

import numpy as np

import pytest

from experiments_manager.export.optimizer_left_out import optimizer_left_out


@pytest.mark.claim(
    "a version holds the model's weights, not the optimizer's (default served module or one holding `self.model`), "
    'first and later versions alike; a served function reading the optimizer gets it saved (logged)')
def test_only_a_save_within_the_block_leaves_the_optimizer_out(tmp_path):
    import keras
    import tensorflow as tf

    inputs = keras.Input(shape=(1,))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(8)(inputs)))
    model.compile(optimizer=keras.optimizers.Adam(use_ema=True), loss="mse")
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(-1, 1)
    model.fit(x, x**2, verbose=0)

    class Module(tf.Module):  # as the original framework's settings write a served module
        def __init__(self):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32)])
        def served_model(self, input):
            return self.model(input)

    module = Module()

    def saved_values(folder):
        tf.saved_model.save(module, str(folder))
        keys = tf.train.load_checkpoint(str(folder / "variables/variables")).get_variable_to_shape_map()
        return len([key for key in keys if key != "_CHECKPOINTABLE_OBJECT_GRAPH"])

    with optimizer_left_out(model):
        within = saved_values(tmp_path / "within")
    after = saved_values(tmp_path / "after")
    assert within == len(model.weights)
    assert after == len(model.weights) + len(model.optimizer.variables)  # the model is as it was
    assert "_trackable_children" not in vars(model)
    loaded = tf.saved_model.load(str(tmp_path / "within"))
    np.testing.assert_allclose(loaded.served_model(x).numpy(), model(x).numpy(), rtol=1e-6)
