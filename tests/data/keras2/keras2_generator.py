'''
Keras 2 era settings: Python generators as pipelines (fit_generator style, endless, read on from
where they stopped) and an optimizer given `lr=`, which Keras 2.11+ (TF 2.14) ignored.
'''
import numpy as np
import tensorflow as tf
from hyperopt import hp

workingFolder = 'experiments/keras2/generator'
session_name = 'generator'
hparams = {'hidden': 8, 'learningRate': 0.01, 'nbEpoch': 2}
hyperopt_space = {'hidden': hp.quniform('hidden', 4, 16, 4)}
model_file = 'model_keras2.py'
input_shape = (3,)
output_activation = None
random_seed = 9
nbEpoch = hparams['nbEpoch']
batch_size = 32
nb_train_samples = 320
nb_val_samples = 96
monitored_loss_name = 'val_loss'


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    def batches():
        rng = np.random.default_rng(0 if isTraining else 1)
        while True:
            x = rng.normal(size=(batch_size, 3)).astype(np.float32)
            yield x, x.sum(axis=1, keepdims=True)
    return batches()


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(lr=learning_rate)


def get_total_loss(model):
    return 'mse'


def get_metrics(model, loss):
    return ['mae']
