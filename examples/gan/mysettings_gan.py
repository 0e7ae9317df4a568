'''
A GAN with its own training loop: points on a ring, no labels; two optimizers (the generator's is the one
`get_optimizer` gives, the discriminator's the model's own `self.d_optimizer`). No compiled loss
(`get_total_loss` returns None): the model's `train_step` computes its losses. The served module is the generator.

    experiments-manager train -u examples/gan/mysettings_gan.py
'''

import numpy as np
import tensorflow as tf

workingFolder = 'experiments/examples/gan'
session_name = 'ring'

hparams = {'hidden': 32,
           'learningRate': 0.002,
           'dLearningRate': 0.002,
           'nbEpoch': 6,
           }

used_gpu_IDs = []
useXLA = False
use_profiling = False
model_file = 'examples/gan/model_gan.py'
weights_moving_averages = True
random_seed = 7

nbEpoch = hparams['nbEpoch']
early_stopping_patience = 10
monitored_loss_name = 'val_g_loss'

raw_data_dir_train = ''
raw_data_dir_val = ''
nb_train_samples = 1024
nb_val_samples = 256
batch_size = 64

served_input_names = ['noise']
served_head_names = ['points']


def ring(count, rng):
    angles = rng.uniform(0, 2 * np.pi, size=count)
    points = np.stack([np.cos(angles), np.sin(angles)], axis=1) * 2 + rng.normal(scale=0.05, size=(count, 2))
    return points.astype(np.float32)


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.5)


def get_metrics(model, loss):
    return []


def get_total_loss(model):
    return None  # the model's own train_step computes its losses


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    ''' points only: a dataset of x, no labels '''
    rng = np.random.default_rng(0 if isTraining else 1)
    points = ring(nb_train_samples if isTraining else nb_val_samples, rng)
    dataset = tf.data.Dataset.from_tensor_slices(points)
    if isTraining:
        dataset = dataset.shuffle(len(points), seed=random_seed)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def get_served_module(model, model_name):
    ''' the generator: noise in, points out '''
    class Generator(tf.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec(shape=[None, 4], dtype=tf.float32, name=served_input_names[0])])
        def served_model(self, noise):
            return {served_head_names[0]: self.model.generator(noise, training=False)}
    return Generator(model)


class Client_IO:
    ''' asks for points from random noise; prints how far from the ring (radius 2) they are '''
    def __init__(self, clientInitSpecs={}, debugMode=False):
        self.rng = np.random.default_rng(clientInitSpecs.get('seed', 0))

    def getInputData(self, idx):
        return {served_input_names[0]: self.rng.normal(size=(batch_size, 4)).astype(np.float32)}

    def decodeResponse(self, result):
        points = np.array(result.outputs[served_head_names[0]].float_val).reshape(-1, 2)
        print('mean distance to the ring:', float(np.mean(np.abs(np.linalg.norm(points, axis=1) - 2))))

    def finalize(self):
        pass
