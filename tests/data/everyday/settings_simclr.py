"""SimCLR pretraining on the everyday PNGs (the labels the pipeline gives are not read), then its linear probe and an
unrelated model by `hparams['kind']` (model_simclr.py)."""
import tensorflow as tf

from settings_everyday import *  # noqa: F401,F403 - the same data

hparams = {'kind': 'simclr', 'classes': 3, 'nbEpoch': 2}
model_file = 'model_simclr.py'
session_name = 'simclr'
nbEpoch = hparams['nbEpoch']


def get_total_loss(model):
    return None if hparams['kind'] == 'simclr' else 'sparse_categorical_crossentropy'


def get_metrics(model, loss):
    return [] if hparams['kind'] == 'simclr' else ['accuracy']


class Served(tf.Module):
    """The image in, the model's answer out (the SimCLR subclass has no `keras.Input`: the signature is this)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name='image')])
    def served_model(self, image):
        return {'output_0': self.model(image, training=False)}


def get_served_module(model, model_name):
    return Served(model)
