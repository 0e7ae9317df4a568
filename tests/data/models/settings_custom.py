"""Custom objects the model file defines (a layer with weights and a state variable, an activation function), two
positional inputs and two named outputs with a loss each."""
import numpy as np
import tensorflow as tf

workingFolder = 'experiments'
session_name = 'custom'
hparams = {'units': 8, 'nbEpoch': 2}
model_file = 'model_custom.py'
random_seed = 12
nbEpoch = hparams['nbEpoch']
batch_size = 32
raw_data_dir_test = 'test'
histogram_freq = 0


def pairs(count, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(count, 3)).astype(np.float32)
    b = rng.normal(size=(count, 2)).astype(np.float32)
    value = (a.sum(axis=1, keepdims=True) * b[:, :1]).astype(np.float32)
    return (a, b), {'value': value, 'positive': (value > 0).astype(np.float32)}


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    x, y = pairs(512 if isTraining else 128, 0 if isTraining else 1)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    return (dataset.shuffle(512, seed=random_seed) if isTraining else dataset).batch(batch_size)


def get_learningRate():
    return 0.01


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)


def get_total_loss(model):
    return {'value': 'mse', 'positive': 'binary_crossentropy'}


def get_metrics(model, loss):
    return {'value': ['mae'], 'positive': ['binary_accuracy']}
