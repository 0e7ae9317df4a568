"""The everyday settings for the subclassed model: it has no `keras.Input`, so the served signature is the settings'
own (`get_served_module`)."""
from settings_everyday import *  # noqa: F401,F403 - the same data, loss, optimizer and metrics

hparams = {**hparams, 'kind': 'subclassed'}


class Served(tf.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name='image')])
    def served_model(self, image):
        return {'output_0': self.model(image, training=False)}


def get_served_module(model, model_name):
    return Served(model)
