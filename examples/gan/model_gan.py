'''A small GAN on 2-D points (a ring): a generator from noise, a discriminator, its own `train_step` with two
optimizers (the compiled one trains the generator, `self.d_optimizer` the discriminator). The data are points only
(no labels). What is served is the generator: noise in, points out.'''
import tensorflow as tf
from tensorflow import keras

NOISE = 4


class RingGan(keras.Model):
    def __init__(self, hidden, d_learning_rate, **kwargs):
        super().__init__(**kwargs)
        self.generator = keras.Sequential([keras.Input((NOISE,)), keras.layers.Dense(hidden, activation='relu'),
                                           keras.layers.Dense(2)], name='generator')
        self.discriminator = keras.Sequential([keras.Input((2,)), keras.layers.Dense(hidden, activation='relu'),
                                               keras.layers.Dense(1)], name='discriminator')
        self.d_optimizer = keras.optimizers.Adam(d_learning_rate, beta_1=0.5, name='d_adam')
        self.d_loss_tracker = keras.metrics.Mean(name='d_loss')
        self.g_loss_tracker = keras.metrics.Mean(name='g_loss')

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    def call(self, noise, training=False):
        return self.generator(noise, training=training)

    def losses_of(self, real):
        noise = tf.random.normal((tf.shape(real)[0], NOISE))
        fake = self.generator(noise, training=True)
        real_logits = self.discriminator(real, training=True)
        fake_logits = self.discriminator(fake, training=True)
        d_loss = tf.reduce_mean(tf.nn.softplus(-real_logits)) + tf.reduce_mean(tf.nn.softplus(fake_logits))
        g_loss = tf.reduce_mean(tf.nn.softplus(-fake_logits))
        return d_loss, g_loss

    def train_step(self, real):
        with tf.GradientTape() as tape:
            d_loss, _ = self.losses_of(real)
        grads = tape.gradient(d_loss, self.discriminator.trainable_variables)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_variables))
        with tf.GradientTape() as tape:
            _, g_loss = self.losses_of(real)
        grads = tape.gradient(g_loss, self.generator.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.generator.trainable_variables))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {'d_loss': self.d_loss_tracker.result(), 'g_loss': self.g_loss_tracker.result()}

    def test_step(self, real):
        d_loss, g_loss = self.losses_of(real)
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {'d_loss': self.d_loss_tracker.result(), 'g_loss': self.g_loss_tracker.result()}


def model(usersettings):
    hparams = usersettings.hparams
    return RingGan(hparams['hidden'], hparams['dLearningRate'])
