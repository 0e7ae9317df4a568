'''Keras 2 era timeseries settings, as the original framework's users wrote them: data named relative to the run's
folder (the original ran there), read with pandas, `get_metrics` returning a bare string, a TCN model file applying
TensorFlow ops to the model's tensors.'''
import numpy as np
import pandas as pd
import tensorflow as tf

workingFolder = 'experiments/keras2_models/tcn'
session_name = 'tcn'
hparams = {'filters': 8, 'learningRate': 0.01, 'nbEpoch': 1}
model_file = 'model_tcn.py'
random_seed = 21
nbEpoch = hparams['nbEpoch']
batch_size = 32
window = 24
# the original framework ran in <workingFolder>/<run>/: from there, four levels up is this test's folder
raw_data_dir_train = '../../../../datasamples/timeseries/'
raw_data_dir_val = '../../../../datasamples/timeseries/'
histogram_freq = 0


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    signal = pd.read_csv(raw_data_files_folder + ('train.csv' if isTraining else 'val.csv'))['value'].to_numpy()
    starts = np.arange(len(signal) - window - 1)
    x = np.stack([signal[start:start + window] for start in starts])[..., None].astype(np.float32)
    y = signal[starts + window][:, None].astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)


def get_total_loss(model):
    return 'mse'


def get_metrics(model, loss):
    return 'mae'
