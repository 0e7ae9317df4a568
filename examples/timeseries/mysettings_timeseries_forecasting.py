'''
Forecasting a generated multi-sine signal: from the last `window` values,
predict the next `horizon` values with a small 1D convolutional network.

    experiments-manager train -u examples/timeseries/mysettings_timeseries_forecasting.py
'''

import numpy as np
import tensorflow as tf

workingFolder = 'experiments/examples/timeseries'
session_name = 'multisine'

hparams = {'window': 32,
           'horizon': 4,
           'filters': 16,
           'learningRate': 0.003,
           'nbEpoch': 20,
           }

model_file = 'examples/timeseries/model_conv1d_forecaster.py'
random_seed = 3
nbEpoch = hparams['nbEpoch']
early_stopping_patience = 6
batch_size = 64
signal_length = 6000
validation_fraction = 0.2


def multi_sine(length, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float32)
    signal = (np.sin(2 * np.pi * t / 50) + 0.5 * np.sin(2 * np.pi * t / 13 + 1.0)
              + 0.25 * np.sin(2 * np.pi * t / 7 + 2.0))
    return (signal + rng.normal(0, 0.05, size=length)).astype(np.float32)


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    signal = multi_sine(signal_length, seed=11)
    split = int(len(signal) * (1 - validation_fraction))
    part = signal[:split] if isTraining else signal[split:]
    window, horizon = hparams['window'], hparams['horizon']
    dataset = tf.keras.utils.timeseries_dataset_from_array(
        part[:-horizon], None, sequence_length=window + horizon, batch_size=None, shuffle=False)
    dataset = dataset.map(lambda s: (s[:window, tf.newaxis], s[window:]))
    if isTraining:
        dataset = dataset.shuffle(4096, seed=random_seed)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)


def get_total_loss(model):
    return 'mse'


def get_metrics(model, loss):
    return ['mae']
