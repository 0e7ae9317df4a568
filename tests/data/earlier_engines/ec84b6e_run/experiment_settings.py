'''
Noisy curve fitting: learn y = x**2 (+ gaussian noise) from generated samples.

Written in the original framework's style (camelCase names, module-level reads of
hparams), so it also documents the settings contract. Run from the repository root:

    experiments-manager train -u examples/regression/mysettings_curve_fitting.py
    experiments-manager train -u examples/regression/mysettings_curve_fitting.py --hparam nbEpoch=5
'''

import numpy as np
import tensorflow as tf

#-> set here your own working folder
workingFolder = 'experiments/examples/curve_fitting'

#set here a 'nickname' to your session, must be at least an empty string
session_name = 'my_test'

# hyperparameters: they complete the experiment folder name and the TensorBoard HParams view
hparams = {'hiddenNeurons': 32,
           'learningRate': 0.01,
           'nbEpoch': 40,
           'addNoise': True,
           'noiseStd': 0.3,
           }

used_gpu_IDs = []          # [] = every visible GPU, or the CPU
useXLA = False
use_profiling = False
model_file = 'examples/regression/model_curve_fitting.py'
weights_moving_averages = True  # Polyak averaging: validation and exports use the EMA weights
random_seed = 42

nbEpoch = hparams['nbEpoch']
early_stopping_patience = 10
monitored_loss_name = 'val_loss'

raw_data_dir_train = ''
raw_data_dir_val = ''
nb_train_samples = 2000
nb_val_samples = 500
batch_size = 50

########## MODEL SERVING PARAMETERS ################
tensorflow_server_address = '127.0.0.1'
tensorflow_server_port = 8500
serving_client_timeout_int_secs = 5
served_input_names = ['input']
served_head_names = ['prediction']

########## LOCAL HELPERS ################
def target_curve(x, rng):
    y = x**2
    if hparams['addNoise'] is True:
        y = y + rng.normal(loc=0.0, scale=hparams['noiseStd'], size=x.shape)
    return y.astype(np.float32)

########## TRAIN/VAL FUNCTIONS ################
def addon_callbacks(model, train_samples, val_samples):
    ''' optional extra keras callbacks: a dict (or a list) '''
    return {}

def get_learningRate():
    return hparams['learningRate']

def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)

def get_metrics(model, loss):
    # the Keras 2 spelling, aliased by the engine under Keras 3
    return [tf.keras.metrics.mean_absolute_error]

def get_total_loss(model):
    return 'mean_squared_error'

def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    ''' generated data: x uniform in [-2, 2], y = x**2 + noise '''
    rng = np.random.default_rng(0 if isTraining else 1)
    nb_samples = nb_train_samples if isTraining else nb_val_samples
    x = rng.uniform(-2, 2, size=(nb_samples, 1)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((x, target_curve(x, rng)))
    if isTraining:
        dataset = dataset.shuffle(nb_samples, seed=random_seed)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

########## SERVING ################
def get_served_module(model, model_name):
    ''' what the exported SavedModel computes: a fixed input signature, named outputs '''
    class ExportedModule(tf.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec(shape=[None, 1], dtype=tf.float32, name=served_input_names[0])])
        def served_model(self, input):
            pred = self.model(input, training=False)
            return {served_head_names[0]: pred, 'prediction_plus_1': pred + 1}
    return ExportedModule(model)

class Client_IO:
    ''' streams requests to a served model: random x values, prints the fit error '''
    def __init__(self, clientInitSpecs={}, debugMode=False):
        self.debugMode = debugMode
        self.rng = np.random.default_rng(clientInitSpecs.get('seed', 0))

    def getInputData(self, idx):
        self.x = self.rng.uniform(-2, 2, size=[batch_size, 1]).astype(np.float32)
        return {served_input_names[0]: self.x}

    def decodeResponse(self, result):
        response = np.array(result.outputs[served_head_names[0]].float_val).reshape(self.x.shape)
        error = float(np.mean(np.abs(response - self.x**2)))
        print(f'mean absolute error vs x**2: {error:.4f}')
        return error

    def finalize(self):
        print('Prediction process ended successfully')
