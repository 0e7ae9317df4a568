'''Keras 2 era classification settings: logits turned into probabilities with tf.nn.softmax in the model file,
`get_metrics` returning one metric object (not a list).'''
import numpy as np
import tensorflow as tf

workingFolder = 'experiments/keras2_models/classifier'
session_name = 'classifier'
hparams = {'hidden': 16, 'learningRate': 0.02, 'nbEpoch': 1}
model_file = 'model_classifier.py'
random_seed = 23
nbEpoch = hparams['nbEpoch']
batch_size = 32
nb_classes = 3
histogram_freq = 0
monitored_loss_name = 'val_loss'


def points(count, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, nb_classes, size=count)
    centres = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]], np.float32)
    return (centres[labels] + rng.normal(scale=0.7, size=(count, 2))).astype(np.float32), labels.astype(np.int32)


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    x, labels = points(384 if isTraining else 96, 0 if isTraining else 1)
    return tf.data.Dataset.from_tensor_slices((x, labels)).batch(batch_size)


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)


def get_total_loss(model):
    return tf.keras.losses.SparseCategoricalCrossentropy()


def get_metrics(model, loss):
    return tf.keras.metrics.SparseCategoricalAccuracy()
