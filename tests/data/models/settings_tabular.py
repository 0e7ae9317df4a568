"""Tabular data with dict inputs and lookup tables: a string column (StringLookup, adapted), an integer column
(IntegerLookup, adapted, one-hot) and a number (Normalization, adapted); will a flat be rented within a week?"""
import numpy as np
import tensorflow as tf

workingFolder = 'experiments'
session_name = 'tabular'
hparams = {'units': 8, 'nbEpoch': 2}
model_file = 'model_tabular.py'
random_seed = 11
nbEpoch = hparams['nbEpoch']
batch_size = 32
raw_data_dir_test = 'test'
monitored_loss_name = 'val_loss'
histogram_freq = 0
CITIES = ['paris', 'lyon', 'lille', 'nantes', 'brest', 'nice']
POPULAR = {'paris': 1.5, 'lyon': 0.8, 'nice': 0.6}


def table(count, seed):
    rng = np.random.default_rng(seed)
    city = rng.choice(CITIES + ['unseen-town'] * (seed >= 100), size=count)
    zone = rng.integers(1, 6, size=count).astype(np.int64) * 10
    size = rng.normal(50.0, 20.0, size=count).astype(np.float32)
    score = np.array([POPULAR.get(name, -0.5) for name in city]) + (zone == 10) - (size - 50.0) / 25.0
    label = (score + rng.normal(scale=0.5, size=count) > 0.3).astype(np.float32)
    return {'city': city.astype(bytes), 'zone': zone, 'size': size}, label


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    seed = 0 if isTraining else (2 if raw_data_files_folder == 'test' else 1)
    features, label = table(512 if isTraining else 128, seed)
    dataset = tf.data.Dataset.from_tensor_slices((features, label))
    return (dataset.shuffle(512, seed=random_seed) if isTraining else dataset).batch(batch_size)


def get_learningRate():
    return 0.02


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)


def get_total_loss(model):
    return 'binary_crossentropy'


def get_metrics(model, loss):
    return ['binary_accuracy']
