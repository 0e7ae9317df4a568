"""A custom layer (a trainable scale per feature, and a non-trainable count of the batches it saw in training), a
custom activation, two inputs, two outputs."""
import tensorflow as tf


def soft_clip(x):
    return 3.0 * tf.keras.activations.tanh(x / 3.0)


class FeatureScale(tf.keras.layers.Layer):
    def __init__(self, offset=0.5, **kwargs):
        super().__init__(**kwargs)
        self.offset = offset

    def build(self, input_shape):
        self.scale = self.add_weight(name='scale', shape=(input_shape[-1],), initializer='ones')
        self.batches = self.add_weight(name='batches', shape=(), initializer='zeros', trainable=False)

    def call(self, inputs, training=False):
        if training:
            self.batches.assign_add(1.0)
        return inputs * self.scale + self.offset


def model(usersettings):
    a = tf.keras.Input(shape=(3,), name='a')
    b = tf.keras.Input(shape=(2,), name='b')
    h = tf.keras.layers.Concatenate()([FeatureScale(name='scaled')(a), b])
    h = tf.keras.layers.Dense(usersettings.hparams['units'], activation=soft_clip)(h)
    h = tf.keras.layers.Dense(usersettings.hparams['units'], activation='relu')(h)
    value = tf.keras.layers.Dense(1, name='value')(h)
    positive = tf.keras.layers.Dense(1, activation='sigmoid', name='positive')(h)
    return tf.keras.Model([a, b], {'value': value, 'positive': positive}, name='custom')
