'''A 1D signal autoencoder in the Keras 2 style: the embedding normalised and the reconstruction reshaped with
TensorFlow ops on the model's tensors.'''
import tensorflow as tf


def model(usersettings):
    length = usersettings.signal_length
    inputs = tf.keras.layers.Input(shape=(length,), name='signal')
    h = tf.expand_dims(inputs, -1)
    h = tf.keras.layers.Conv1D(8, 5, padding='same', activation='relu')(h)
    h = tf.keras.layers.Flatten()(h)
    embedding = tf.math.l2_normalize(tf.keras.layers.Dense(usersettings.hparams['embedding'])(h), axis=-1)
    decoded = tf.keras.layers.Dense(length)(embedding)
    outputs = tf.reshape(decoded, (-1, length), name='reconstruction')
    return tf.keras.Model(inputs, outputs, name='autoencoder')
