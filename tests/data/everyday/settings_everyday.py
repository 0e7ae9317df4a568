"""PNG class folders read with `keras.utils.image_dataset_from_directory` (the folder written by the tests:
`pngs/<class>/<n>.png`, one colour per class), the model by `hparams['kind']` (model_everyday.py)."""
import tensorflow as tf
from tensorflow import keras

workingFolder = 'experiments'
session_name = 'everyday'
hparams = {'kind': 'sequential', 'classes': 3, 'train_backbone': True, 'nbEpoch': 2}
model_file = 'model_everyday.py'
random_seed = 3
nbEpoch = hparams['nbEpoch']
batch_size = 16
raw_data_dir_train = 'pngs'
raw_data_dir_val = 'pngs'
raw_data_dir_test = 'pngs'
class_names = ['cyan', 'magenta', 'yellow']
histogram_freq = 0
early_stopping_patience = 100


def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
    return keras.utils.image_dataset_from_directory(
        raw_data_files_folder, class_names=class_names, image_size=(8, 8), batch_size=batch_size,
        shuffle=isTraining, seed=random_seed, verbose=False)


def get_learningRate():
    return 0.02


def get_optimizer(model, loss, learning_rate):
    return keras.optimizers.Adam(learning_rate=learning_rate)


def get_total_loss(model):
    return 'sparse_categorical_crossentropy'


def get_metrics(model, loss):
    return [] if hparams['kind'] == 'own_step' else ['accuracy']
