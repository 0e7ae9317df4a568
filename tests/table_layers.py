"""A custom Keras layer holding a `MutableHashTable` (state that is neither a variable nor the optimizer's), shared
by the tests of what exports and read-backs keep (tests/e2e/test_export_background.py,
tests/unit/export/test_saved_state.py). Imports TensorFlow: import it inside a test."""

import keras
import tensorflow as tf


class TableShift(keras.layers.Layer):
    """Adds the value its table holds under "shift" (0 until something inserts one) to its input."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.table = tf.lookup.experimental.MutableHashTable(tf.string, tf.float32, default_value=0.0)

    def call(self, x):
        return x + tf.reshape(self.table.lookup(tf.constant("shift")), [])  # a scalar of known shape

    def compute_output_shape(self, input_shape):
        return input_shape
