'''A small Keras 2-style model file for the Keras 2 settings corpus: tf.keras layers, one output.'''
import tensorflow as tf


def model(usersettings):
    inputs = tf.keras.layers.Input(shape=usersettings.input_shape, name='input')
    x = tf.keras.layers.Flatten()(inputs)
    x = tf.keras.layers.Dense(usersettings.hparams['hidden'], activation='relu')(x)
    outputs = tf.keras.layers.Dense(1, activation=usersettings.output_activation, name='output')(x)
    return tf.keras.models.Model(inputs=inputs, outputs=outputs)
