'''
A settings file in the original framework's style, as researchers have them:
camelCase names, module-level reads of hparams, an infinite generator pipeline
sized by nb_train_samples, metrics given as a {layer name: function} dict,
Keras 2 spellings, names the new engine ignores, addon_callbacks returning a dict.
'''
import itertools

import numpy as np
import tensorflow as tf

workingFolder = 'experiments/original_style'
session_name = 'my_test'
hparams = {'hiddenNeurons': 16,
           'predictSmoothParams': True,
           'learningRate': 0.01,
           'nbEpoch': 2,
           'addNoise': True,
           'anomalyAtX': -3,
           }
used_gpu_IDs = []
useXLA = True
use_profiling = True
model_file = 'tests/data/original_style/model_original.py'
weights_moving_averages = True
random_seed = 42
nbEpoch = hparams['nbEpoch']
early_stopping_patience = 10
raw_data_dir_train = ''
raw_data_dir_val = ''
raw_data_filename_extension = ''
nb_train_samples = 400
nb_val_samples = 100
steps_per_epoch = 100
validation_steps = 0
batch_size = 20
reference_labels = ['values']
tensorflow_server_address = '127.0.0.1'
tensorflow_server_port = 9000
wait_for_server_ready_int_secs = 5
serving_client_timeout_int_secs = 1
serve_on_gpu = True
served_input_names = ['input']
served_head_names = ['prediction']
debug = False


def target_curve(x):
    y = x**2
    if hparams['addNoise'] is True:
        y += np.random.normal(loc=0.0, scale=0.1, size=x.shape).astype(np.float32)
    return y


def addon_callbacks(model, train_samples, val_samples):
    return {'noop': tf.keras.callbacks.LambdaCallback()}


def get_learningRate():
    return hparams['learningRate']


def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.RMSprop(learning_rate=learning_rate)


def get_metrics(model, loss):
    return {'dense_1': tf.keras.metrics.mean_squared_error}


def get_total_loss(model):
    return tf.keras.losses.MSE


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    def gen():
        for _ in itertools.count(1):
            x = np.random.uniform(-5, 5, size=[batch_size, 1]).astype(np.float32)
            yield x, target_curve(x)

    return tf.data.Dataset.from_generator(
        gen, output_signature=(tf.TensorSpec([None, 1], tf.float32), tf.TensorSpec([None, 1], tf.float32))
    ).prefetch(1)


def get_served_module(model, model_name):
    class ExportedModule(tf.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec(shape=[batch_size, 1], dtype=tf.float32, name=served_input_names[0])])
        def served_model(self, input):
            pred = model(input)
            return {served_head_names[0]: pred, 'prediction_plus_1': pred + 1}
    return ExportedModule(model)


class Client_IO:
    def __init__(self, clientInitSpecs={}, debugMode=False):
        self.debugMode = debugMode

    def getInputData(self, idx):
        self.x = np.random.uniform(low=-5, high=5, size=[batch_size, 1]).astype(np.float32)
        return {served_input_names[0]: self.x}

    def decodeResponse(self, result):
        return np.array(result.outputs[served_head_names[0]].float_val)

    def finalize(self):
        print('Prediction process ended successfuly')
