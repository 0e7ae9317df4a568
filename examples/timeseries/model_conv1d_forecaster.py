'''A small causal 1D convolutional forecaster.'''

import tensorflow as tf


def model(usersettings):
    window = usersettings.hparams['window']
    filters = usersettings.hparams['filters']
    inputs = tf.keras.Input(shape=(window, 1), name='history')
    h = inputs
    for dilation in (1, 2, 4):
        h = tf.keras.layers.Conv1D(filters, 3, padding='causal', dilation_rate=dilation, activation='relu')(h)
    h = tf.keras.layers.Flatten()(h)
    forecast = tf.keras.layers.Dense(usersettings.hparams['horizon'], name='forecast')(h)
    return tf.keras.Model(inputs, forecast, name='conv1d_forecaster')
