'''A classifier in the Keras 2 style: a hidden layer, logits, and tf.nn.softmax applied to the model's tensor.'''
import tensorflow as tf


def model(usersettings):
    inputs = tf.keras.layers.Input(shape=(2,), name='point')
    h = tf.keras.layers.Dense(usersettings.hparams['hidden'], activation='relu')(inputs)
    logits = tf.keras.layers.Dense(usersettings.nb_classes)(h)
    return tf.keras.Model(inputs, tf.nn.softmax(logits, axis=-1), name='classifier')
