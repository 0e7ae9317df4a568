"""Self-supervised pretraining, then a linear probe, by `hparams['kind']`:

- 'simclr': a `keras.Model` subclass holding `self.encoder` (the functional model `build_encoder` makes, named
  'encoder'), `self.projector` and `self.augment` (Sequential models without `keras.Input`, built by their first
  call in `train_step`), trained by its own `train_step` on the images alone (NT-Xent between two augmented views;
  the labels the pipeline gives are not read), no compiled loss;
- 'probe': a functional model around a new `build_encoder()` (frozen) with a `Dense` head named 'head': what
  `--init-from` a 'simclr' run fills by the block both models name 'encoder';
- 'unrelated': a functional model sharing no block with 'simclr' (its `--init-from` is refused).
"""
import tensorflow as tf
from tensorflow import keras


def build_encoder():
    inputs = keras.Input(shape=(8, 8, 3))
    hidden = keras.layers.Conv2D(6, 3, padding='same', activation='relu')(inputs / 255.0)
    features = keras.layers.Dense(16, activation='relu')(keras.layers.GlobalAveragePooling2D()(hidden))
    return keras.Model(inputs, features, name='encoder')


class SimCLR(keras.Model):
    def __init__(self, temperature=0.5, **kwargs):
        super().__init__(**kwargs)
        self.encoder = build_encoder()
        # no keras.Input: built by their first call, in train_step (a served function never calls them)
        self.projector = keras.Sequential([keras.layers.Dense(8, activation='relu'), keras.layers.Dense(8)],
                                          name='projector')
        self.augment = keras.Sequential([keras.layers.RandomFlip('horizontal'), keras.layers.RandomContrast(0.3)],
                                        name='augment')
        self.temperature = temperature
        self.tracker = keras.metrics.Mean(name='loss')

    @property
    def metrics(self):
        return [self.tracker]

    def call(self, images, training=False):
        return self.encoder(images, training=training)

    def contrastive_loss(self, images, training):
        first = self.projector(self.encoder(self.augment(images, training=training), training=training))
        second = self.projector(self.encoder(self.augment(images, training=training), training=training))
        first, second = tf.math.l2_normalize(first, axis=1), tf.math.l2_normalize(second, axis=1)
        similarities = tf.matmul(first, second, transpose_b=True) / self.temperature
        labels = tf.range(tf.shape(images)[0])
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, similarities, from_logits=True))

    def train_step(self, data):
        images = data[0] if isinstance(data, tuple) else data
        with tf.GradientTape() as tape:
            loss = self.contrastive_loss(images, training=True)
        variables = self.encoder.trainable_variables + self.projector.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.tracker.update_state(loss)
        return {'loss': self.tracker.result()}

    def test_step(self, data):
        images = data[0] if isinstance(data, tuple) else data
        self.tracker.update_state(self.contrastive_loss(images, training=False))
        return {'loss': self.tracker.result()}


def model(usersettings):
    kind = usersettings.hparams['kind']
    if kind == 'simclr':
        return SimCLR()
    inputs = keras.Input(shape=(8, 8, 3), name='image')
    if kind == 'probe':
        encoder = build_encoder()
        encoder.trainable = False
        outputs = keras.layers.Dense(usersettings.hparams['classes'], activation='softmax', name='head')(
            encoder(inputs, training=False))
        return keras.Model(inputs, outputs, name='probe')
    hidden = keras.layers.Conv2D(4, 3, name='stem')(inputs / 255.0)
    outputs = keras.layers.Dense(usersettings.hparams['classes'], activation='softmax', name='classifier')(
        keras.layers.GlobalAveragePooling2D()(hidden))
    return keras.Model(inputs, outputs, name='unrelated')
