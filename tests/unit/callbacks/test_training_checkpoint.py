"""A checkpoint written in a background thread: the epoch's end copies what it holds and goes on; the values are
those of the epoch's end; run.json records the epoch only once its checkpoint is durable; a failed write stops the
run at the next epoch's end and run.json never claims its epoch."""

import errno
import threading

import numpy as np
import pytest

from experiments_manager.callbacks.best_value import BestValue
from experiments_manager.callbacks.run_info_updater import RunInfoUpdater
from experiments_manager.callbacks.resumable import ResumableEarlyStopping
from experiments_manager.callbacks.training_checkpoint import TrainingCheckpoint
from experiments_manager.run.resume_state import ResumableParts
from experiments_manager.run.checkpointing import Checkpointer, verify
from experiments_manager.run.experiment import Experiment


def _model():
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01, use_ema=True), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


class GatedCheckpointer(Checkpointer):
    """A real `Checkpointer` whose writes wait for `gate` (a slow shared file system), or fail with ENOSPC."""

    def __init__(self, folder, fail=False):
        super().__init__(folder)
        self.gate, self.fail, self.writers = threading.Event(), fail, []

    def write(self, snapshot):
        self.writers.append(threading.current_thread().name)
        assert self.gate.wait(30), "the test never opened the gate"
        if self.fail:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.folder))
        return super().write(snapshot)


def _parts():
    """A run's resumable parts: its best value and early stopping."""
    return ResumableParts(BestValue("val_loss"), ResumableEarlyStopping(monitor="val_loss"))


@pytest.fixture
def run(tmp_path):
    """(model, experiment, checkpoint callback, run.json callback, checkpointer), the callbacks as a run orders
    them: the checkpoint, then run.json's record."""

    def make(fail=False):
        model = _model()
        experiment = Experiment(tmp_path / "run")
        experiment.root.mkdir()
        experiment.write_run_info({"status": "running", "epochs_completed": 0})
        checkpointer = GatedCheckpointer(experiment.checkpoints_dir, fail=fail)
        checkpoint = TrainingCheckpoint(checkpointer, _parts(), in_background=True)
        updater = RunInfoUpdater(experiment, BestValue("val_loss"), None, checkpoint)
        for callback in (checkpoint, updater):
            callback.set_model(model)
        return model, experiment, checkpoint, updater, checkpointer

    return make


def _epoch_end(epoch, *callbacks):
    for callback in callbacks:
        callback.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 2.0 / (epoch + 1)})


@pytest.mark.claim("a checkpoint is written in a background thread from a copy of the epoch's end; run.json records "
                   "the epoch once it is durable; a failed write stops the run at the next epoch's end")
def test_the_epoch_end_goes_on_while_its_checkpoint_is_written_and_run_json_waits_for_it(run):
    """The epoch's end returns while the write waits (a slow file system); training then moves the weights, yet
    the checkpoint holds the epoch's end; run.json says 0 epochs until the checkpoint is durable, then 1."""
    model, experiment, checkpoint, updater, checkpointer = run()
    at_epoch_end = [variable.numpy() for variable in model.weights]

    _epoch_end(0, checkpoint, updater)
    for variable in model.trainable_variables:  # the next epoch trains on
        variable.assign(np.zeros(variable.shape, dtype=variable.dtype))

    assert not experiment.checkpoints_dir.is_dir() or not list(experiment.checkpoints_dir.glob("ckpt-*"))
    assert experiment.run_info()["epochs_completed"] == 0, "run.json claims an epoch no checkpoint holds yet"
    checkpointer.gate.set()
    checkpoint.wait()

    assert checkpointer.writers == ["checkpoint"]  # the background thread wrote it, not this one
    [folder] = experiment.checkpoints_dir.glob("ckpt-*")
    assert verify(folder) is None
    assert experiment.run_info()["epochs_completed"] == 1
    fresh = _model()
    Checkpointer(experiment.checkpoints_dir).restore_latest(fresh, fresh.optimizer)
    for saved, restored in zip(at_epoch_end, fresh.weights):
        np.testing.assert_array_equal(restored.numpy(), saved)


@pytest.mark.claim("a checkpoint is written in a background thread from a copy of the epoch's end; run.json records "
                   "the epoch once it is durable; a failed write stops the run at the next epoch's end")
def test_a_failed_background_write_is_raised_at_the_next_epoch_end_and_run_json_keeps_the_epoch_before(run):
    model, experiment, checkpoint, updater, checkpointer = run(fail=True)
    _epoch_end(0, checkpoint, updater)
    checkpointer.gate.set()

    with pytest.raises(OSError, match="No space left on device") as raised:
        _epoch_end(1, checkpoint)
    assert raised.value.errno == errno.ENOSPC  # the error itself: the run's one line for a full disk names it
    assert experiment.run_info()["epochs_completed"] == 0
    checkpoint.close(ending=raised.value)  # nothing left to raise or log twice


def test_a_checkpoint_with_functions_after_it_is_written_on_the_training_thread(tmp_path):
    """A Kafka run commits its offsets once a checkpoint holds them, on the thread that consumes: such a checkpoint
    is written on the training thread, and its functions run after it, there."""
    model = _model()
    checkpointer = GatedCheckpointer(tmp_path / "checkpoints")
    checkpointer.gate.set()
    seen = []
    checkpoint = TrainingCheckpoint(checkpointer, _parts(), after_save=[
        lambda: seen.append((threading.current_thread().name, len(list(checkpointer.folder.glob("ckpt-*")))))],
        in_background=True)
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {})
    assert seen == [(threading.current_thread().name, 1)]
    assert checkpointer.writers == [threading.current_thread().name]


def test_run_json_changes_of_two_threads_at_once_are_all_kept(tmp_path):
    """The checkpoint's thread records an epoch while the training thread records something else: no change is
    lost (run.json is read, changed and replaced under the experiment's lock)."""
    experiment = Experiment(tmp_path)
    experiment.write_run_info({"status": "running"})

    def record(prefix):
        for index in range(40):
            if prefix == "a":
                experiment.record.epoch({"epochs_completed": index, "best_value": None, "best_epoch": None,
                                         "last_epoch_logs": {f"a{index}": float(index)}})
            else:
                experiment.record.mlflow({f"b{index}": index})  # merged into what run.json holds

    threads = [threading.Thread(target=record, args=(prefix,)) for prefix in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    info = experiment.run_info()
    assert info["mlflow"] == {f"b{index}": index for index in range(40)}, "an MLflow change was lost"
    assert info["epochs_completed"] == 39 and info["last_epoch_logs"] == {"a39": 39.0}, "an epoch was lost"
