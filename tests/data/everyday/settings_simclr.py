"""SimCLR pretraining on the everyday PNGs (the labels the pipeline gives are not read), then its linear probe and an
unrelated model by `hparams['kind']` (model_simclr.py)."""
from settings_everyday import *  # noqa: F401,F403 - the same data
# the image in, the model's answer out (the SimCLR subclass has no `keras.Input`): the subclassed model's signature
from settings_subclassed import get_served_module  # noqa: F401

hparams = {'kind': 'simclr', 'classes': 3, 'nbEpoch': 2}
model_file = 'model_simclr.py'
session_name = 'simclr'
nbEpoch = hparams['nbEpoch']


def get_total_loss(model):
    return None if hparams['kind'] == 'simclr' else 'sparse_categorical_crossentropy'


def get_metrics(model, loss):
    return [] if hparams['kind'] == 'simclr' else ['accuracy']

