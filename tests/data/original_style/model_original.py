import tensorflow as tf


def model(usersettings):
    data = tf.keras.Input(shape=(1,), name='input')
    h = tf.keras.layers.Dense(units=usersettings.hparams['hiddenNeurons'], activation='relu',
                              kernel_regularizer=tf.keras.regularizers.l2(0.01))(data)
    pred = tf.keras.layers.Dense(units=1, activation=None)(h)
    return tf.keras.Model(inputs=data, outputs=pred)
