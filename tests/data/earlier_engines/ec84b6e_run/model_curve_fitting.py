'''A small dense network for 1D curve fitting.'''

import tensorflow as tf


def model(usersettings):
    hidden = usersettings.hparams['hiddenNeurons']
    inputs = tf.keras.Input(shape=(1,), name='input')
    h = tf.keras.layers.Dense(hidden, activation='relu')(inputs)
    h = tf.keras.layers.Dense(hidden, activation='relu')(h)
    prediction = tf.keras.layers.Dense(1, name='prediction')(h)
    return tf.keras.Model(inputs, prediction, name='curve_fitting')
