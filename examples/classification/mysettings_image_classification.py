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
class_names = ['horizontal bars', 'vertical bars', 'blob']  # in evaluate's report, the served metadata, edge labels.txt
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


class Client_IO:
    ''' streams batches of fresh images to the served model (or to an edge export, `predict --edge FILE`);
    prints each batch's accuracy and the first image's class '''
    def __init__(self, clientInitSpecs={}, debugMode=False):
        self.seed = clientInitSpecs.get('seed', 100)  # images the model never saw (training 0, validation 1)
        self.debugMode = debugMode
        self.right = self.seen = 0

    def getInputData(self, idx):
        self.images, self.labels = make_images(batch_size, self.seed + idx)
        return {'image': self.images}

    def decodeResponse(self, result):
        probabilities = np.array(result.outputs['output_0'].float_val).reshape(len(self.labels), nb_classes)
        predicted = probabilities.argmax(axis=1)
        right = int(np.sum(predicted == self.labels))
        self.right, self.seen = self.right + right, self.seen + len(self.labels)
        print(f'{right}/{len(self.labels)} right; the first image: {class_names[predicted[0]]} '
              f'({probabilities[0].max():.0%}), truly {class_names[self.labels[0]]}')
        return right / len(self.labels)

    def finalize(self):
        if self.seen:
            print(f'accuracy {self.right / self.seen:.1%} on {self.seen} images')
