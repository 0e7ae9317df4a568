'''
Keras 2 era settings: ImageDataGenerator().flow(...) iterators as pipelines. The original
framework made an epoch of `iterator.n // batch_size` batches (nb_train_samples unset).
'''
import numpy as np
import tensorflow as tf
from hyperopt import hp

workingFolder = 'experiments/keras2/image_generator'
session_name = 'image_generator'
hparams = {'hidden': 8, 'learningRate': 0.01, 'nbEpoch': 2}
hyperopt_space = {'hidden': hp.quniform('hidden', 4, 16, 4)}
model_file = 'model_keras2.py'
input_shape = (8, 8, 1)
output_activation = 'sigmoid'
random_seed = 6
nbEpoch = hparams['nbEpoch']
batch_size = 32
monitored_loss_name = 'val_loss'


def images(nb_samples, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=nb_samples)
    x = rng.normal(0, 0.3, size=(nb_samples, 8, 8, 1)).astype(np.float32)
    x[labels == 1, 2:6, :, 0] += 1.0  # a horizontal bar for class 1
    return x, labels.astype(np.float32)


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    x, y = images(500 if isTraining else 200, 0 if isTraining else 1)
    generator = tf.keras.preprocessing.image.ImageDataGenerator(horizontal_flip=isTraining)
    return generator.flow(x, y, batch_size=batch_size, shuffle=isTraining, seed=random_seed)


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)


def get_total_loss(model):
    return 'binary_crossentropy'


def get_metrics(model, loss):
    return ['accuracy']
