"""TensorFlow ops on a model's symbolic tensors as layers (`keras2/tf_ops.py`): any argument layout (positional,
keyword, nested in a list, variadic as `tf.einsum`'s), computing what the ops compute; outside the block, Keras 3's
own refusal."""

import re

import numpy as np
import pytest


@pytest.mark.claim("TensorFlow ops applied to a model's symbolic tensors (`tf.concat`, `tf.nn.relu`, "
                   "`tf.reduce_mean`...) become layers, as Keras 2 made them: trained, exported, served, reloaded",
                   note="(in process: tf.einsum's variadic tensors, tf.concat's list, keyword and `name` arguments; "
                        "the model computes what NumPy does)")
def test_ops_in_any_argument_layout_become_layers_computing_the_same():
    import keras
    import tensorflow as tf

    from experiments_manager.keras2.tf_ops import tf_ops_as_layers

    with tf_ops_as_layers():
        x, y = keras.Input((3,)), keras.Input((3, 4))
        mixed = tf.einsum("bi,bij->bj", x, y)
        joined = tf.concat([mixed, tf.expand_dims(x[:, 0], -1) * 2.0], axis=-1)
        out = tf.reduce_mean(tf.nn.relu(tf.add(joined, 1.0)), axis=1, keepdims=True, name="mean")
        model = keras.Model([x, y], out)
    # named after the op, numbered as Keras numbers a name already used in the process (`tf.concat_2`)
    assert [re.sub(r"_\d+$", "", layer.name) for layer in model.layers if layer.name.startswith("tf.")] == [
        "tf.expand_dims", "tf.einsum", "tf.concat", "tf.math.add", "tf.nn.relu", "tf.math.reduce_mean"]
    rng = np.random.default_rng(3)
    xs, ys = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 3, 4)).astype(np.float32)
    joined = np.concatenate([np.einsum("bi,bij->bj", xs, ys), xs[:, :1] * 2.0], axis=-1)
    expected = np.maximum(joined + 1.0, 0.0).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict([xs, ys], verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_outside_the_block_keras_refuses_as_before():
    import keras
    import tensorflow as tf

    from experiments_manager.keras2.tf_ops import tf_ops_as_layers

    with tf_ops_as_layers():
        pass  # registered with TensorFlow, no longer active
    with pytest.raises(ValueError, match="A KerasTensor cannot be used as input to a TensorFlow function"):
        tf.concat([keras.Input((3,)), keras.Input((3,))], axis=-1)
