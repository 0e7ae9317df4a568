'''Keras 2 era 1D signal embedding settings: an autoencoder whose embedding is L2-normalised with TensorFlow ops, and
a custom metric written for Keras 2 (its name given positionally, weights added by name).'''
import numpy as np
import tensorflow as tf

workingFolder = 'experiments/keras2_models/autoencoder'
session_name = 'autoencoder'
hparams = {'embedding': 4, 'learningRate': 0.01, 'nbEpoch': 1}
model_file = 'model_autoencoder.py'
random_seed = 22
nbEpoch = hparams['nbEpoch']
batch_size = 32
signal_length = 32
histogram_freq = 0


def signals(count, seed):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, signal_length, dtype=np.float32)
    frequency = rng.uniform(1, 4, size=(count, 1)).astype(np.float32)
    return np.sin(2 * np.pi * frequency * t) + rng.normal(scale=0.05, size=(count, signal_length)).astype(np.float32)


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    x = signals(256 if isTraining else 64, 0 if isTraining else 1).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, x)).batch(batch_size)


class CloseFraction(tf.keras.metrics.Metric):
    '''Share of the values reconstructed within 0.5, written as Keras 2 metrics were.'''

    def __init__(self, name='close_fraction', **kwargs):
        super().__init__(name, **kwargs)
        self.close = self.add_weight('close', initializer='zeros', aggregation=tf.VariableAggregation.SUM)
        self.total = self.add_weight('total', initializer='zeros')

    def update_state(self, y_true, y_pred, sample_weight=None):
        near = tf.cast(tf.abs(y_true - y_pred) < 0.5, tf.float32)
        self.close.assign_add(tf.reduce_sum(near))
        self.total.assign_add(tf.cast(tf.size(near), tf.float32))

    def result(self):
        return self.close / tf.maximum(self.total, 1.0)


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)


def get_total_loss(model):
    return 'mse'


def get_metrics(model, loss):
    return [CloseFraction()]
