'''
Keras 2 era settings: a legacy optimizer with `lr` and a time-based `decay`, a loss object with
Reduction.AUTO, and Keras 2 metric spellings (tf.keras.metrics.mean_squared_error, 'logcosh').
'''
import numpy as np
import tensorflow as tf
from hyperopt import hp

workingFolder = 'experiments/keras2/legacy_optimizer'
session_name = 'legacy_optimizer'
hparams = {'hidden': 8, 'learningRate': 0.05, 'nbEpoch': 2}
hyperopt_space = {'hidden': hp.quniform('hidden', 4, 16, 4)}
model_file = 'model_keras2.py'
input_shape = (2,)
output_activation = None
random_seed = 8
nbEpoch = hparams['nbEpoch']
batch_size = 32
nb_train_samples = 320
nb_val_samples = 96
monitored_loss_name = 'val_loss'


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    rng = np.random.default_rng(0 if isTraining else 1)
    x = rng.uniform(-1, 1, size=(nb_train_samples if isTraining else nb_val_samples, 2)).astype(np.float32)
    y = (x[:, :1] - 2 * x[:, 1:]).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.legacy.SGD(lr=learning_rate, decay=1e-3, momentum=0.9)


def get_total_loss(model):
    return tf.keras.losses.MeanSquaredError(reduction=tf.keras.losses.Reduction.AUTO)


def get_metrics(model, loss):
    return [tf.keras.metrics.mean_squared_error, 'logcosh']
