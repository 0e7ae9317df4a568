'''
Keras 2 era settings: a keras.utils.Sequence written for Keras 2 (no super().__init__() call,
its own on_epoch_end shuffling), for training and validation.
'''
import math

import numpy as np
import tensorflow as tf
from hyperopt import hp

workingFolder = 'experiments/keras2/sequence'
session_name = 'sequence'
hparams = {'hidden': 8, 'learningRate': 0.01, 'nbEpoch': 2}
hyperopt_space = {'hidden': hp.quniform('hidden', 4, 16, 4)}
model_file = 'model_keras2.py'
input_shape = (2,)
output_activation = None
random_seed = 7
nbEpoch = hparams['nbEpoch']
batch_size = 32
nb_train_samples = 384
nb_val_samples = 128
monitored_loss_name = 'val_loss'


class CurveSequence(tf.keras.utils.Sequence):
    def __init__(self, nb_samples, seed, shuffle):
        rng = np.random.default_rng(seed)
        self.x = rng.uniform(-1, 1, size=(nb_samples, 2)).astype(np.float32)
        self.y = (self.x[:, :1] ** 2 + self.x[:, 1:]).astype(np.float32)
        self.shuffle = shuffle
        self.rng = rng
        self.order = np.arange(nb_samples)

    def __len__(self):
        return math.ceil(len(self.x) / batch_size)

    def __getitem__(self, index):
        rows = self.order[index * batch_size:(index + 1) * batch_size]
        return self.x[rows], self.y[rows]

    def on_epoch_end(self):
        if self.shuffle:
            self.rng.shuffle(self.order)


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    return CurveSequence(nb_train_samples if isTraining else nb_val_samples, 0 if isTraining else 1, isTraining)


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.RMSprop(learning_rate=learning_rate)


def get_total_loss(model):
    return 'mse'


def get_metrics(model, loss):
    return ['mae']
