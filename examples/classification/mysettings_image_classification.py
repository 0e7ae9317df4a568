'''
Image classification on generated images: three classes of 16x16 patterns
(horizontal bars, vertical bars, a centred blob) under noise.

    experiments-manager train -u examples/classification/mysettings_image_classification.py
'''

import numpy as np
import tensorflow as tf

workingFolder = 'experiments/examples/classification'
session_name = 'shapes'

hparams = {'filters': 8,
           'learningRate': 0.003,
           'nbEpoch': 15,
           'noise': 0.5,
           }

model_file = 'examples/classification/model_small_convnet.py'
random_seed = 7
nbEpoch = hparams['nbEpoch']
early_stopping_patience = 5
monitored_loss_name = 'val_accuracy'   # maximised: the engine picks the mode from the name
batch_size = 32
nb_train_samples = 1536
nb_val_samples = 384
image_size = 16
nb_classes = 3
useXLA = False
enable_mixed_precision = False


def make_images(nb_samples, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, nb_classes, size=nb_samples)
    images = rng.normal(0.0, hparams['noise'], size=(nb_samples, image_size, image_size, 1)).astype(np.float32)
    offsets = rng.integers(2, image_size - 6, size=nb_samples)
    for index, (label, offset) in enumerate(zip(labels, offsets)):
        if label == 0:
            images[index, offset:offset + 3, :, 0] += 1.0
        elif label == 1:
            images[index, :, offset:offset + 3, 0] += 1.0
        else:
            images[index, offset:offset + 4, offset:offset + 4, 0] += 2.0
    return images, labels.astype(np.int32)


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    images, labels = make_images(nb_train_samples if isTraining else nb_val_samples, 0 if isTraining else 1)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if isTraining:
        dataset = dataset.shuffle(len(labels), seed=random_seed)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)


def get_total_loss(model):
    return tf.keras.losses.SparseCategoricalCrossentropy()


def get_metrics(model, loss):
    return ['accuracy']
