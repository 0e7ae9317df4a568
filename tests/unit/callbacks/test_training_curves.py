"""training_curves.png: drawn at the first epoch, then at most every `min_interval` seconds, and at the end."""

import threading

import numpy as np
import pytest

from experiments_manager.callbacks import HistoryCSV, TrainingCurves
from experiments_manager.callbacks.training_curves import plot_history


def _drawing_of_first_rows(history_csv, rows, path):
    """The PNG `plot_history` draws from the first `rows` epochs of `history_csv`."""
    lines = history_csv.read_text().splitlines()
    partial = path.with_suffix(".csv")
    partial.write_text("\n".join(lines[: rows + 1]) + "\n")
    plot_history(partial, path)
    return path.read_bytes()


def _fit(epochs, callbacks, initial_epoch=0):
    """A small seeded model trained to epoch `epochs` (from `initial_epoch`) in steps of 2 with `callbacks`."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 2))
    model.fit(x, x.sum(axis=1), epochs=epochs, initial_epoch=initial_epoch, batch_size=32, verbose=0,
              callbacks=callbacks)


@pytest.mark.parametrize("min_interval", [3600.0, 0.0])
@pytest.mark.claim(
    'training_curves.png is drawn at the first epoch, then at most every 30 s, and at the end with every epoch',
    note="(the PNG's bytes after each epoch against `plot_history` of the rows so far; `min_interval` 3600 and 0)")
def test_the_png_is_drawn_at_the_first_epoch_then_at_most_every_min_interval_and_at_the_end(tmp_path, min_interval):
    import keras

    history_csv, png = tmp_path / "history.csv", tmp_path / "training_curves.png"
    seen = []

    class LookAtThePng(keras.callbacks.Callback):  # after TrainingCurves: what the file shows once it has drawn
        def on_epoch_end(self, epoch, logs=None):
            for thread in threading.enumerate():
                if thread.name == "training-curves":
                    thread.join(timeout=60)
            seen.append(png.read_bytes())

    _fit(4, [HistoryCSV(history_csv), TrainingCurves(history_csv, png, min_interval=min_interval), LookAtThePng()])

    drawn = [_drawing_of_first_rows(history_csv, rows, tmp_path / f"rows{rows}.png") for rows in (1, 2, 3, 4)]
    if min_interval:  # epoch 1 at once; 2 and 3 too soon after it; epoch 4, fit's last, at its end at once
        assert seen == [drawn[0]] * 3 + [drawn[3]]
    else:  # every epoch
        assert seen == drawn
    assert png.read_bytes() == drawn[3]  # the end of training: every epoch shown


@pytest.mark.claim(
    'training_curves.png is drawn at the first epoch, then at most every 30 s, and at the end with every epoch')
def test_a_fit_that_raises_leaves_the_undrawn_epochs_to_finish(tmp_path):
    """Keras skips `on_train_end` when `fit` raises (a stop signal): `finish()`, which the run calls then, draws
    every epoch the history has."""
    import keras

    history_csv, png = tmp_path / "history.csv", tmp_path / "training_curves.png"

    class Stop(Exception):
        pass

    class StopInEpoch4(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:
                raise Stop()

    curves = TrainingCurves(history_csv, png, min_interval=3600.0)
    with pytest.raises(Stop):
        _fit(6, [HistoryCSV(history_csv), curves, StopInEpoch4()])
    curves.finish()
    assert png.read_bytes() == _drawing_of_first_rows(history_csv, 3, tmp_path / "rows3.png")
    curves.finish()  # nothing left to draw
    assert not [thread for thread in threading.enumerate() if thread.name == "training-curves"]


@pytest.mark.claim(
    'training_curves.png is drawn at the first epoch, then at most every 30 s, and at the end with every epoch',
    note="(a federated client, a session per round: paced from the image's last writing, complete at the last round)")
def test_a_clients_rounds_are_paced_from_the_images_last_writing_and_its_last_round_drawn_whole(tmp_path):
    """Each round a session of its own (a new callback, one `fit`): round 1 draws (no image yet), round 2 (too soon
    after it, not the last) draws nothing, not even at its end; round 3, the federation's last, draws every round."""
    history_csv, png = tmp_path / "history.csv", tmp_path / "training_curves.png"
    shown = []
    for round_number in (1, 2, 3):
        curves = TrainingCurves(history_csv, png, min_interval=3600.0)
        curves.pace_across_sessions(final=round_number == 3)
        _fit(round_number, [HistoryCSV(history_csv), curves], initial_epoch=round_number - 1)
        curves.finish()
        shown.append(png.read_bytes())
    first, _, every = (_drawing_of_first_rows(history_csv, rows, tmp_path / f"rows{rows}.png") for rows in (1, 2, 3))
    assert shown == [first, first, every]
