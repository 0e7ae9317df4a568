'''A temporal convolutional network in the Keras 2 style: dilated causal convolutions whose residual sums,
activations and the last step are TensorFlow ops on the model's tensors.'''
import tensorflow as tf


def model(usersettings):
    inputs = tf.keras.layers.Input(shape=(usersettings.window, 1), name='window')
    h = tf.keras.layers.Conv1D(usersettings.hparams['filters'], 1)(inputs)
    for dilation in (1, 2, 4):
        branch = tf.keras.layers.Conv1D(usersettings.hparams['filters'], 3, padding='causal',
                                        dilation_rate=dilation)(h)
        h = tf.nn.relu(tf.add(h, branch))              # TF ops on Keras tensors: TFOpLambda layers in Keras 2
    last = h[:, -1, :]
    summary = tf.concat([last, tf.reduce_mean(h, axis=1)], axis=-1)
    outputs = tf.keras.layers.Dense(1, name='next_value')(summary)
    return tf.keras.Model(inputs, outputs, name='tcn')
