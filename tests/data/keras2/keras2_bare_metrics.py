'''
Keras 2 era settings: bare loss and metric functions with labels of shape (batch,) against
outputs of shape (batch, 1) (Keras 2 matched the ranks), a metric named by its class ('AUC',
logged as 'auc' by Keras 2) and monitored by that name, and Keras 2's 'acc'.
'''
import numpy as np
import tensorflow as tf
from hyperopt import hp

workingFolder = 'experiments/keras2/bare_metrics'
session_name = 'bare_metrics'
hparams = {'hidden': 8, 'learningRate': 0.01, 'nbEpoch': 2}
hyperopt_space = {'hidden': hp.quniform('hidden', 4, 16, 4)}
model_file = 'model_keras2.py'
input_shape = (4,)
output_activation = 'sigmoid'
random_seed = 5
nbEpoch = hparams['nbEpoch']
batch_size = 32
nb_train_samples = 512
nb_val_samples = 128
monitored_loss_name = 'val_auc'


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    rng = np.random.default_rng(0 if isTraining else 1)
    x = rng.normal(size=(nb_train_samples if isTraining else nb_val_samples, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)  # shape (batch,)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)


def get_total_loss(model):
    return tf.keras.losses.binary_crossentropy


def get_metrics(model, loss):
    return [tf.keras.metrics.binary_crossentropy, tf.keras.metrics.hinge, 'AUC', 'acc']
