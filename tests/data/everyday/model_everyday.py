"""The models of everyday image research, by `hparams['kind']`: a top-level `keras.Sequential` with augmentation,
batch norm and dropout; a functional model around a nested augmentation `Sequential` and a nested `Sequential`
backbone (frozen when `hparams['train_backbone']` is False) with a head named 'head'; a model with its own
`train_step` that returns only its loss (as a VAE's does); a subclassed model without `Input`."""
import tensorflow as tf
from tensorflow import keras


class OwnStep(keras.Model):
    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, self(x, training=True)))
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return {'loss': loss}


class Subclassed(keras.Model):
    """No `keras.Input`: built by its first call (the settings' `get_served_module` gives the signature)."""

    def __init__(self, classes, **kwargs):
        super().__init__(**kwargs)
        self.flip = keras.layers.RandomFlip('horizontal')
        self.conv = keras.layers.Conv2D(6, 3, padding='same', activation='relu')
        self.norm = keras.layers.BatchNormalization()
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(classes, activation='softmax')

    def call(self, images, training=False):
        hidden = self.conv(self.flip(images / 255.0, training=training))
        return self.head(self.pool(self.norm(hidden, training=training)))


def model(usersettings):
    hparams = usersettings.hparams
    classes = hparams['classes']
    if hparams['kind'] == 'subclassed':
        return Subclassed(classes)
    if hparams['kind'] == 'sequential':
        return keras.Sequential([
            keras.Input(shape=(8, 8, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.RandomFlip('horizontal', seed=1),
            keras.layers.Conv2D(6, 3, padding='same'),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(classes, activation='softmax'),
        ])
    augment = keras.Sequential([keras.layers.RandomFlip('horizontal'), keras.layers.RandomContrast(0.2)],
                               name='augment')
    backbone = keras.Sequential([keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(6, 3, padding='same'),
                                 keras.layers.BatchNormalization(), keras.layers.ReLU(),
                                 keras.layers.GlobalAveragePooling2D()], name='backbone')
    backbone.trainable = hparams.get('train_backbone', True)
    inputs = keras.Input(shape=(8, 8, 3), name='image')
    features = keras.layers.Dropout(0.2)(backbone(augment(inputs), training=False))
    outputs = keras.layers.Dense(classes, activation='softmax', name='head')(features)
    return (OwnStep if hparams['kind'] == 'own_step' else keras.Model)(inputs, outputs)
