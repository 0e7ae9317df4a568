'''Curve fitting that also appends the ids of the samples it trains on to `usersettings.ids_file`.

Used to check at-least-once delivery from Kafka: every id must be written at
least once, even when the trainer is killed and resumed.
'''

import keras
import numpy as np
import tensorflow as tf


class RecordIds(keras.layers.Layer):
    """Passes x through; in training, writes the batch's sample ids (one line per batch)."""

    def __init__(self, path, **kwargs):
        super().__init__(**kwargs)
        self.ids_path = path

    def _write(self, ids):
        with open(self.ids_path, 'a') as handle:
            handle.write(' '.join(str(int(i)) for i in ids.numpy()) + '\n')
        return np.int64(0)

    def call(self, inputs, training=None):
        x, ids = inputs
        if training:
            tf.py_function(self._write, [ids], tf.int64)
        return x


def model(usersettings):
    x = keras.Input(shape=(1,), name='x')
    ids = keras.Input(shape=(), dtype='int64', name='sample_id')
    h = RecordIds(usersettings.ids_file)([x, ids])
    h = keras.layers.Dense(16, activation='relu')(h)
    prediction = keras.layers.Dense(1, name='prediction')(h)
    return keras.Model({'x': x, 'sample_id': ids}, prediction, name='recording')
