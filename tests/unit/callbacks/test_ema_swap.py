"""`EMASwap`: Keras' SwapEMAWeights with each swap one compiled call, exact, validating the EMA weights."""

import numpy as np
import pytest


def _trained():
    import keras

    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01, use_ema=True), loss="mse")
    x = np.random.default_rng(5).normal(size=(128, 8)).astype("float32")
    y = x[:, :1] * 2 - x[:, 1:2]
    model.fit(x, y, epochs=2, verbose=0)
    return model, x, y


def _values(variables):
    return [variable.numpy() for variable in variables]


@pytest.mark.slow
@pytest.mark.claim('EMA: validation, best value, early stopping and exports use the averaged weights')
def test_validation_sees_the_ema_weights_and_training_goes_on_with_the_raw_ones_exactly():
    """`fit` validates with the EMA weights (val_loss == an evaluate of the averages, as Keras' SwapEMAWeights
    gives), then the raw weights are back bit for bit, and the averages too; a swap in and out is exact."""
    import keras

    from experiments_manager.callbacks import EMASwap

    model, x, y = _trained()
    optimizer = model.optimizer
    swap = EMASwap()
    swap.set_model(model)
    raw, averages = _values(optimizer._trainable_variables), _values(optimizer._model_variables_moving_average)
    swap.on_test_begin()
    assert all(np.array_equal(now, average) for now, average in zip(_values(optimizer._trainable_variables), averages))
    swap.on_test_end()
    assert all(np.array_equal(now, value) for now, value in zip(_values(optimizer._trainable_variables), raw))
    assert all(np.array_equal(now, value)
               for now, value in zip(_values(optimizer._model_variables_moving_average), averages))

    ours = model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y), callbacks=[EMASwap()]).history["val_loss"]
    trained_raw = _values(optimizer._trainable_variables)
    for variable, average in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average):
        variable.assign(average)
    assert ours[0] == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-6)

    model, x, y = _trained()  # the same run with Keras' own callback: the same validation loss and raw weights
    keras_loss = model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y),
                           callbacks=[keras.callbacks.SwapEMAWeights()]).history["val_loss"]
    assert keras_loss[0] == pytest.approx(ours[0], rel=1e-6)
    assert all(np.allclose(a, b, rtol=1e-6, atol=1e-7)
               for a, b in zip(_values(model.optimizer._trainable_variables), trained_raw))
