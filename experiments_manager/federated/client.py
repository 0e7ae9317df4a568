"""A data holder's side of a federation: trains its partition with the engine's Trainer, round after round."""

import math
import time
from pathlib import Path

from experiments_manager.utils.errors import UserInputError

CLIENTS_FOLDER = "clients"


class ClientStopped(Exception):
    """A client's round did not produce weights (a signal, stalled data, a NaN loss): the server counts it as failed."""


def client_folder(experiment_dir, partition_index):
    """`<server experiment>/clients/client_<index>/`: where client `partition_index` keeps its own run."""
    return Path(experiment_dir) / CLIENTS_FOLDER / f"client_{partition_index}"


class FederatedClient:
    """One client of a federation, for one message of the server (a training round or an evaluation).

    Clients hold no state between messages (Flower may run each message in a
    new process, or on any simulation actor): everything a round needs is in
    the client's checkpoint. Its experiment folder is `client_folder(job.experiment_dir, index)` (run.json,
    TensorBoard logs, history, checkpoints; no exports: the server exports). Each
    round starts from the global weights, trains `nbEpoch` local epochs with the
    settings' optimizer (EMA included) and callbacks, checkpoints, and returns the
    EMA (Polyak) weights. The settings are loaded with `hparams['procID']` set to
    the client's partition index.

    Args:
        job: the `FederatedJob`.
        partition: the client's `DataPartition`.

    Example:

    ```python
    client = FederatedClient(job, DataPartition(0, 2))
    try:
        weights, metrics = client.train_round(global_weights, proximal_mu=0.0)
    finally:
        client.close()
    ```
    """

    def __init__(self, job, partition):
        self.created = time.monotonic()
        self.job = job
        self.partition = partition
        self.settings = job.load_settings({"procID": partition.index})
        try:
            self._open(job, partition)
        except BaseException:
            self.settings.release()  # a message that failed to start leaves no modules either
            raise

    def _open(self, job, partition):
        from experiments_manager.experiment import RUN_FILE_NAME, Experiment, running_command
        from experiments_manager.training import SessionOptions, Trainer

        root = client_folder(job.experiment_dir, partition.index)
        if (root / RUN_FILE_NAME).is_file():
            self.experiment = Experiment(root)
        else:
            self.experiment = Experiment.create(self.settings, running_command(), root=root)
            self.experiment.update_run_info(federated_client={"partition_id": partition.index,
                                                              "num_partitions": partition.count})
        resuming = self.experiment.checkpoints_dir.is_dir()
        self.trainer = Trainer(self.experiment, self.settings, resuming=resuming, partition=partition)
        # the federation decides when training ends, and validates the global model itself
        self.session = self.trainer.open_session(SessionOptions(export=False, early_stopping=False,
                                                                validate_raw_weights=False))

    def train_round(self, weights, proximal_mu=0.0, server_round=None):
        """Trains `nbEpoch` epochs from the global `weights`.

        Args:
            weights: the global model's weights (numpy arrays, `model.get_weights()` order).
            proximal_mu: FedProx's `proximal_mu` (0: plain local training).
            server_round: the round number, for the client's run.json.

        Returns:
            (EMA weights as numpy arrays, dict of the last epoch's metrics with `num-examples`).

        Raises:
            ClientStopped: training was interrupted or the loss was not finite.
        """
        from experiments_manager.callbacks import ProximalStep
        from experiments_manager.export import ema_weights_swapped_in

        model = self.session.model
        set_global_weights(model, weights, self.session.averages)
        extra = []
        if proximal_mu:
            extra.append(ProximalStep([variable.numpy() for variable in model.trainable_variables], proximal_mu))
        start = self.session.plan.epochs_completed()
        fit_started = time.monotonic()
        history, stopped = self.trainer.fit(self.session, start + self.settings.training.epochs, extra)
        fit_seconds = time.monotonic() - fit_started
        if stopped is not None:
            raise ClientStopped(f"client {self.partition.index}: {stopped.reason}")
        # the clients' own validation reaches the server through federated evaluation, not here
        logs = {key: float(values[-1]) for key, values in history.history.items()
                if values and not key.startswith("val_")}
        if not all(math.isfinite(value) for value in logs.values()):
            self.experiment.mark_ended("failed", error="loss became NaN or infinite")  # with its `ended` time
            raise ClientStopped(f"client {self.partition.index}: loss became NaN or infinite")
        epochs = self.session.plan.epochs_completed() - start
        with ema_weights_swapped_in(model, model.optimizer):
            trained = [array.copy() for array in model.get_weights()]
        logs["num-examples"] = self._examples_per_epoch() * epochs
        self.experiment.update_run_info(last_round={
            "round": server_round, "epochs": epochs, "num_examples": logs["num-examples"],
            "fit_seconds": round(fit_seconds, 3),
            "message_seconds": round(time.monotonic() - self.created, 3),  # settings, model, restore, fit
        })
        return trained, logs

    def evaluate(self, weights):
        """The global model's metrics on this client's validation data (and `num-examples`)."""
        inputs = self.session.inputs
        model = self.session.model
        set_global_weights(model, weights, self.session.averages)
        results = model.evaluate(inputs.val, steps=inputs.val_steps, return_dict=True, verbose=0)
        steps = inputs.val_steps or int(inputs.val.cardinality())
        return {**{key: float(value) for key, value in results.items()},
                "num-examples": max(1, steps) * self.settings.training.batch_size}

    def _examples_per_epoch(self):
        """Steps x batch size: exact but for a last partial batch, which FedAvg's weighting can ignore."""
        inputs = self.session.inputs
        steps = inputs.train_steps or int(inputs.train.cardinality())
        return max(1, steps) * self.settings.training.batch_size

    def close(self):
        """Closes the inputs and frees the model and the modules of this message's settings (a simulation actor
        serves many clients in turn)."""
        import keras

        try:
            self.session.close()
            keras.backend.clear_session()
        finally:
            self.settings.release()


def set_global_weights(model, weights, averages=None):
    """Loads the global weights and restarts the moving averages (and their warm-up) from them.

    Without the restart, EMA would pull this round's weights back toward the
    client's weights of earlier rounds.

    Args:
        model: the client's compiled model.
        weights: the global weights (numpy arrays, `model.get_weights()` order).
        averages: the session's `WeightAverages`, or None without EMA.
    """
    try:
        model.set_weights(weights)
    except ValueError as error:
        raise UserInputError(f"federated weights do not fit the model: {error} "
                             "(do the server and the clients run the same model file?)") from None
    if averages is not None:
        averages.restart(model)
