"""Every optimizer of a model comes back at a resume (`run/checkpointing.py`, `training/compiled_model.py`): a GAN's
second optimizer, which Keras builds at its first `apply_gradients`, is built before the checkpoint is read, so its
iterations and moments continue; one Keras cannot fill is refused in one line, never restarted silently."""

import numpy as np
import pytest


def gan(seed):
    """A small GAN: its own `train_step`, the compiled optimizer for the generator, `self.d_optimizer` for the
    discriminator (built by Keras at its first use)."""
    import keras
    import tensorflow as tf

    class Gan(keras.Model):
        def __init__(self):
            super().__init__()
            self.generator = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4)], name="generator")
            self.discriminator = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name="discriminator")
            self.d_optimizer = keras.optimizers.Adam(1e-3, name="d_adam")

        def call(self, x):
            return self.generator(x)

        def train_step(self, data):
            noise = tf.random.normal((tf.shape(data)[0], 2))
            with tf.GradientTape() as tape:
                fake = self.discriminator(self.generator(noise))
                real = self.discriminator(data)
                d_loss = tf.reduce_mean(tf.nn.softplus(fake)) + tf.reduce_mean(tf.nn.softplus(-real))
            grads = tape.gradient(d_loss, self.discriminator.trainable_variables)
            self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_variables))
            with tf.GradientTape() as tape:
                g_loss = tf.reduce_mean(tf.nn.softplus(-self.discriminator(self.generator(noise))))
            grads = tape.gradient(g_loss, self.generator.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.generator.trainable_variables))
            return {"d_loss": d_loss, "g_loss": g_loss}

    keras.utils.set_random_seed(seed)
    model = Gan()
    model.compile(optimizer=keras.optimizers.Adam(1e-3, name="g_adam"))
    return model


def data():
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(np.random.default_rng(0).normal(size=(32, 4)).astype("float32")).batch(8)


@pytest.mark.claim("Every optimizer survives a resume: a second optimizer Keras builds lazily (a GAN's) continues "
                   "with its iterations and moments, or the resume is refused in one line naming it",
                   note="(a GAN's `d_optimizer` restored bitwise from a checkpoint into a model built as training "
                        "builds it; the same checkpoint into a model whose second optimizer cannot be built is one "
                        "line naming it, where Keras only warns and restarts it)")
def test_a_second_optimizer_continues_at_a_resume_or_is_refused_by_name(tmp_path):
    from experiments_manager.run.checkpointing import Checkpointer
    from experiments_manager.training.compiled_model import built_as_fit_builds
    from experiments_manager.utils.optimizers import optimizers_of
    from experiments_manager.utils.errors import UserInputError

    trained = gan(1)
    built_as_fit_builds(trained, data())
    trained.fit(data(), epochs=1, verbose=0)
    assert [name for name, _ in optimizers_of(trained)] == ["model.optimizer", "model.d_optimizer"]
    assert int(trained.d_optimizer.iterations.numpy()) == 4
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    checkpointer.save(trained, trained.optimizer, {"state_version": 2, "epochs_completed": 1, "callbacks": {}})

    resumed = gan(2)
    built_as_fit_builds(resumed, data())  # as the trainer builds it before the restore
    assert resumed.d_optimizer.built
    assert Checkpointer(tmp_path / "checkpoints").restore_latest(resumed, resumed.optimizer)["epochs_completed"] == 1
    for (name, saved), (_, restored) in zip(optimizers_of(trained), optimizers_of(resumed)):
        assert len(saved.variables) == len(restored.variables) > 2, name
        for before, after in zip(saved.variables, restored.variables):
            assert np.array_equal(np.asarray(before), np.asarray(after)), (name, before.path)

    unbuilt = gan(3)
    unbuilt.build((None, 2))
    unbuilt.optimizer.build(unbuilt.trainable_variables)  # the second optimizer left as Keras leaves it
    with pytest.raises(UserInputError, match=r"expected the checkpoint's state for every optimizer of the model, "
                                             r"got optimizer .d_adam., because it has 2 variables whereas the saved optimizer has 6"):
        Checkpointer(tmp_path / "checkpoints").restore_latest(unbuilt, unbuilt.optimizer)
