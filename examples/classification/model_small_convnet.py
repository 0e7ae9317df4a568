'''A small convolutional classifier.'''

import tensorflow as tf


def model(usersettings):
    filters = usersettings.hparams['filters']
    size = usersettings.image_size
    inputs = tf.keras.Input(shape=(size, size, 1), name='image')
    h = tf.keras.layers.Conv2D(filters, 3, activation='relu', padding='same')(inputs)
    h = tf.keras.layers.MaxPooling2D()(h)
    h = tf.keras.layers.Conv2D(2 * filters, 3, activation='relu', padding='same')(h)
    h = tf.keras.layers.GlobalAveragePooling2D()(h)
    # float32 output keeps the softmax stable under mixed precision
    probabilities = tf.keras.layers.Dense(usersettings.nb_classes, activation='softmax', dtype='float32',
                                          name='probabilities')(h)
    return tf.keras.Model(inputs, probabilities, name='small_convnet')
