'''
A federated settings file written for the original framework: the client id arrives as
hparams['procID'] and picks the client's own data file at module level. It must run unchanged.
'''
import os
import numpy as np
import tensorflow as tf

workingFolder = 'experiments/federated_original'
session_name = 'fl_original'

hparams = {'nbEpoch': 1,
           'learningRate': 0.01,
           'federated': 'FedAvg',
           'minCl': 2,
           'minFit': 2,
           'minEval': 2,
           'procID': 0,
           }

enable_federated_learning = True
used_gpu_IDs = []
useXLA = False
use_profiling = False
model_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'model_dense.py')
weights_moving_averages = True
random_seed = 42
nbEpoch = hparams['nbEpoch']
early_stopping_patience = 10
monitored_loss_name = 'val_loss'

# the hyperparameter hparams['procID'] (i.e. federated client ID) selects the client's data
data_dir = os.environ['FEDERATED_TEST_DATA']
raw_data_dir_train = os.path.join(data_dir, 'client' + str(hparams['procID']) + '.csv')
raw_data_dir_val = os.path.join(data_dir, 'val.csv')
raw_data_filename_extension = ''
nb_train_samples = 0
nb_val_samples = 0
batch_size = 20

served_input_names = ['input']
served_head_names = ['prediction']

def get_learningRate():
    return hparams['learningRate']

def get_optimizer(model, loss, learning_rate):
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)

def get_metrics(model, loss):
    return {'prediction': tf.keras.metrics.mean_absolute_error}

def get_total_loss(model):
    return 'mean_squared_error'

def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    table = np.loadtxt(raw_data_files_folder, delimiter=',', dtype=np.float32, ndmin=2)
    dataset = tf.data.Dataset.from_tensor_slices((table[:, :1], table[:, 1:]))
    return dataset.batch(batch_size)
