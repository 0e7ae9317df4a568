"""EMA (Polyak) weights: the warmed-up decay, step by step, across a checkpoint, and what a user sees in history.csv."""

import csv
import shutil

import numpy as np
import pytest

from conftest import REPO, settings_variant
from experiments_manager.training.ema import warmed_up_decay


@pytest.mark.claim('the decay warms up as `min(ema_momentum, (1 + n) / (40 + n))`')
def test_warmed_up_decay_rises_from_zero_to_the_ceiling():
    assert warmed_up_decay(0, 0.99) == 0.0  # first update: the averages take the weights, as Keras does
    assert warmed_up_decay(1, 0.99) == pytest.approx(2 / 41)
    assert warmed_up_decay(40, 0.99) == pytest.approx(41 / 80)
    assert warmed_up_decay(3860, 0.99) == pytest.approx(0.99, abs=1e-4)
    assert warmed_up_decay(5000, 0.99) == 0.99
    assert warmed_up_decay(5000, 0.9) == 0.9


def _tiny_model(averages):
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=averages.attach(keras.optimizers.SGD(0.05)), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2)).astype("float32")
    return x, (x @ np.array([[2.0], [-1.0]], "float32") + 0.5).astype("float32")


def _averages(model):
    return [average.numpy() for average in model.optimizer._model_variables_moving_average]


class _RawWeights:
    """Records the raw weights after every step (what the averages average)."""

    def __init__(self):
        import keras

        self.steps = []
        recorder = self

        class Record(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                recorder.steps.append([variable.numpy() for variable in self.model.trainable_variables])

        self.callback = Record()


@pytest.mark.claim('the decay warms up as `min(ema_momentum, (1 + n) / (40 + n))`')
@pytest.mark.claim(
    '`ema_momentum` from the settings is the ceiling used in a run',
    note='(weak: a unit test with 0.9; the settings value reaching a run is not asserted)')
def test_averages_follow_the_warmed_up_decay_step_by_step():
    from experiments_manager.training.ema import WeightAverages

    averages = WeightAverages(0.9)
    model = _tiny_model(averages)
    raw = _RawWeights()
    x, y = _data()
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=[raw.callback])  # 32 updates
    expected = None
    for updates, weights in enumerate(raw.steps):
        decay = warmed_up_decay(updates, 0.9)
        expected = weights if expected is None else [decay * a + (1 - decay) * w for a, w in zip(expected, weights)]
    for got, want in zip(_averages(model), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert averages.decay_now() == pytest.approx(warmed_up_decay(32, 0.9))
    # Keras' fixed momentum would have given the first weights a share of 0.9**31: a different average
    fixed = raw.steps[0]
    for weights in raw.steps[1:]:
        fixed = [0.9 * a + 0.1 * w for a, w in zip(fixed, weights)]
    assert max(np.max(np.abs(g - f)) for g, f in zip(_averages(model), fixed)) > 1e-3


@pytest.mark.claim('the checkpoint holds the EMA averages')
def test_a_resumed_run_continues_the_same_averages(tmp_path):
    """Checkpoint at the end of epoch 1 (inside `fit`, as the engine does), rebuild everything, restore,
    train epoch 2: the averages equal those of an uninterrupted two-epoch run."""
    import keras

    from experiments_manager.run.checkpointing import Checkpointer
    from experiments_manager.training.ema import WeightAverages

    x, y = _data()
    whole = WeightAverages(0.99)
    model = _tiny_model(whole)
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)

    checkpointer = Checkpointer(tmp_path / "checkpoints")
    first = WeightAverages(0.99)
    model_a = _tiny_model(first)
    save = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: checkpointer.save(
        model_a, model_a.optimizer, {"epochs_completed": 1, "callbacks": {}}))
    model_a.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[save])

    second = WeightAverages(0.99)
    model_b = _tiny_model(second)
    checkpointer.restore_latest(model_b, model_b.optimizer)
    assert second.decay_now() == pytest.approx(warmed_up_decay(16, 0.99))
    model_b.fit(x, y, batch_size=4, epochs=2, initial_epoch=1, shuffle=False, verbose=0)
    for got, want in zip(_averages(model_b), _averages(model)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_restart_takes_the_current_weights_and_warms_up_again():
    """What a federated client does when the global weights arrive."""
    from experiments_manager.training.ema import WeightAverages

    averages = WeightAverages(0.99)
    model = _tiny_model(averages)
    x, y = _data()
    model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)
    assert averages.decay_now() == pytest.approx(warmed_up_decay(48, 0.99))
    model.set_weights([np.ones((2, 1), "float32"), np.zeros(1, "float32")])
    averages.restart(model)
    np.testing.assert_array_equal(_averages(model)[0], np.ones((2, 1)))
    assert averages.decay_now() == 0.0
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert averages.decay_now() == pytest.approx(warmed_up_decay(16, 0.99))  # counted from the restart


def _first_epoch(workdir, name, lines):
    from experiments_manager import training

    settings = settings_variant(workdir, name, lines)
    outcome = training.train(str(settings), {"nbEpoch": 1}, command=["test"])
    assert outcome.status == "finished", outcome.reason
    with open(workdir / outcome.experiment.root / "history.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    return float(row["val_loss"]), float(row["val_loss_raw"])


@pytest.mark.claim('history.csv: one row per epoch; `val_<metric>` is the EMA weights, `val_<metric>_raw` the raw ones')
@pytest.mark.claim(
    'with the warm-up, EMA validates close to the raw weights; fixed momentum far worse',
    note='(weak: regression example, epoch 1, ≤ 1.5× vs > 3×; the 1.06× over all three examples is BENCHMARKS.md)')
@pytest.mark.claim("`ema_warmup = False` gives Keras' fixed momentum")
def test_first_epoch_ema_validation_is_close_to_the_raw_weights(tmp_path, monkeypatch):
    """The regression example after one epoch (40 steps): validation loss of the EMA weights it exports
    against the raw weights it trains, with the warm-up and with Keras' fixed momentum (the old behaviour)."""
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    ema, raw = _first_epoch(tmp_path, "warm.py", [])
    fixed_ema, fixed_raw = _first_epoch(tmp_path, "fixed.py", ["ema_warmup = False"])
    print(f"epoch 1 val_loss: warm-up EMA {ema:.4f} vs raw {raw:.4f} ({ema / raw:.2f}x); "
          f"fixed momentum EMA {fixed_ema:.4f} vs raw {fixed_raw:.4f} ({fixed_ema / fixed_raw:.2f}x)")
    assert fixed_raw == pytest.approx(raw, rel=1e-4)  # the same training, only the averages differ
    assert ema <= 1.5 * raw
    assert fixed_ema > 3 * fixed_raw


@pytest.mark.claim('the raw weights are validated at epochs 1, 1 + N, 1 + 2N, ... and the last '
                   '(`raw_validation_freq`, default 10)')
def test_the_raw_weights_are_validated_on_their_schedule_the_ema_ones_every_epoch():
    """`fit` with the EMA swap and `RawWeightsValidation(frequency=3)` over 7 epochs: `val_loss_raw` at epochs 1,
    4 and 7 (the last), equal to an `evaluate` of the raw weights; `val_loss` (EMA) at every epoch."""
    import keras

    from experiments_manager.callbacks import RawWeightsValidation
    from experiments_manager.training.ema import WeightAverages

    import tensorflow as tf

    model = _tiny_model(WeightAverages(0.99))
    x, y = _data()
    validation = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    seen = {}

    class Raw(RawWeightsValidation):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            seen[epoch + 1] = (dict(logs), self.model.evaluate(x, y, batch_size=16, verbose=0))

    history = model.fit(x, y, batch_size=4, epochs=7, shuffle=False, verbose=0, validation_data=validation,
                        callbacks=[keras.callbacks.SwapEMAWeights(), Raw(validation, frequency=3)])
    assert len(history.history["val_loss"]) == 7
    assert [epoch for epoch, (logs, _) in seen.items() if "val_loss_raw" in logs] == [1, 4, 7]
    for epoch in (1, 4, 7):
        logs, raw = seen[epoch]
        assert logs["val_loss_raw"] == pytest.approx(raw, rel=1e-5)
        assert logs["val_loss_raw"] != pytest.approx(logs["val_loss"], rel=1e-3)  # EMA and raw differ
