"""A data holder's side of a federation: trains its partition with the engine's Trainer, round after round."""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from experiments_manager.run.endings import failed
from experiments_manager.run.lifecycle import record_ending
from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    import keras
    from numpy.typing import NDArray

    from experiments_manager.federated.job import FederatedJob
    from experiments_manager.settings.pipeline import DataPartition
    from experiments_manager.training.callback_plan import CallbackPlan
    from experiments_manager.training.ema import WeightAverages
    from experiments_manager.utils.atomic import PathLike

CLIENTS_FOLDER = "clients"
PROXIMAL_MU_KEY = "proximal-mu"  # what Flower's FedProx sends to clients
COLLECT_BYTES = 64 << 20  # a model whose weights take this much is collected at `close` (see there)
ROUNDS_KEY = "num-rounds"  # the federation's rounds in all, in each round's train config (the server's)


class ClientStopped(Exception):
    """A client's round did not produce weights (a signal, stalled data, a NaN loss): the server counts it as failed."""


def client_folder(experiment_dir: PathLike, partition_index: int) -> Path:
    """`<server experiment>/clients/client_<index>/`: where client `partition_index` keeps its own run."""
    return Path(experiment_dir) / CLIENTS_FOLDER / f"client_{partition_index}"


def node_partition(node_config: Mapping[str, Any]) -> DataPartition:
    """The `DataPartition` a SuperNode's node config gives (`partition-id`, `num-partitions`)."""
    from experiments_manager.settings.pipeline import DataPartition

    try:
        return DataPartition(int(node_config["partition-id"]), int(node_config["num-partitions"]))
    except (KeyError, ValueError):
        raise UserInputError(
            f"SuperNode node config {dict(node_config)}: expected partition-id and num-partitions, "
            "e.g. flower-supernode --node-config 'partition-id=0 num-partitions=2'"
        ) from None


class FederatedClient:
    """One client of a federation, for one message of the server (a training round or an evaluation), or for
    every round of a run (a SuperNode's persistent worker keeps it: see `federated.supernode_worker`).

    Everything a round needs is in the client's checkpoint (Flower may run each
    message in a new process, or on any simulation actor). A client kept for the
    next round (a SuperNode's worker keeps it) carries over what a fresh client
    would restore from that checkpoint: the optimizer's state (moments, step
    count) and the resumable callbacks' state (LR on plateau: best value, wait,
    learning rate). Nothing else carries over: not the weights (every round starts
    from the global weights), not the EMA averages (restarted from the global
    weights, warm-up included, every round, kept or not), not the random state
    (every round starts from the one the session opened with: `RandomState`).
    One difference remains: a kept client's datasets are the session's, so a
    tf.data shuffle or a Keras 2 sequence's batch order goes on to its next pass
    where a fresh client would start its first one again. A client whose inputs
    do not restart (a Keras 2 generator) is never kept (`keep_across_rounds`).
    Its experiment folder is `client_folder(job.experiment_dir, index)` (run.json,
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

    def __init__(self, job: FederatedJob, partition: DataPartition) -> None:
        self.message_started = time.monotonic()
        self._rounds = 0  # trained by this object
        self.last_round: Optional[dict[str, Any]] = None  # what run.json's last_round says after `train_round`
        self.job = job
        self.partition = partition
        self.settings = job.load_settings({"procID": partition.index})
        self._writing = contextlib.ExitStack()  # the client folder's lease, held until `close`
        try:
            self._open(job, partition)
        except BaseException:
            self._writing.close()
            self.settings.release()  # a message that failed to start leaves no modules either
            raise

    def _open(self, job: FederatedJob, partition: DataPartition) -> None:
        from experiments_manager.run.experiment import RUN_FILE_NAME, Experiment, running_command
        from experiments_manager.run.lifecycle import attempt
        from experiments_manager.training import SessionOptions, Trainer

        root = client_folder(job.experiment_dir, partition.index)
        created = not (root / RUN_FILE_NAME).is_file()
        self.experiment = (Experiment.create(self.settings, running_command(), root=root) if created
                           else Experiment(root))
        # one writer per client folder, as per experiment: a second federation on the same folder is refused
        self._writing.enter_context(attempt(self.experiment, running_command(), console=False, records_ending=False))
        if created:
            self.experiment.record.federated_client(partition.index, partition.count)
        resuming = self.experiment.checkpoints_dir.is_dir()
        self.trainer = Trainer(self.experiment, self.settings, resuming=resuming, partition=partition)
        # the federation decides when training ends, and validates the global model itself
        self.session = self.trainer.open_session(SessionOptions(
            export=False, early_stopping=False, validate_raw_weights=False,
            validate=self.settings.federated.client_validation, write_graph=not resuming))
        self._fresh = True  # no message served yet: the random state is the one the session opened with
        self._random_state = RandomState(self.experiment.run_info()["seed"], self.session.model)

    @property
    def keep_across_rounds(self) -> bool:
        """Whether this client may serve the next round too: only when its input pipelines restart.

        A Keras 2 generator pipeline continues where the last round stopped (one
        sized for `nbEpoch` epochs would run out in round 2): such a client is
        built again for every message, as a fresh process would.
        """
        inputs = self.session.inputs
        return bool(getattr(inputs, "train_restartable", True) and getattr(inputs, "val_restartable", True))

    def train_round(self, weights: Sequence[NDArray[Any]], proximal_mu: float = 0.0, server_round: Optional[int] = None,
                    rounds: Optional[int] = None) -> tuple[list[NDArray[Any]], dict[str, float]]:
        """Trains `nbEpoch` epochs from the global `weights`.

        Args:
            weights: the global model's weights (numpy arrays, `model.get_weights()` order).
            proximal_mu: FedProx's `proximal_mu` (0: plain local training).
            server_round: the round number, for the client's run.json.
            rounds: the federation's rounds in all (default None: unknown). The client's training_curves.png is
                redrawn at most every 30 s, and in its last round (every round when unknown).

        Returns:
            (EMA weights as numpy arrays, dict of the last epoch's metrics with `num-examples`).

        Raises:
            ClientStopped: training was interrupted or the loss was not finite.
        """
        from experiments_manager.federated.proximal_step import ProximalStep
        from experiments_manager.export.exporter import ema_weights_swapped_in

        model = self.session.model
        set_global_weights(model, weights, self.session.averages)
        if self._rounds:
            keep_callback_state(self.session.plan)
        if not self._fresh:
            self._random_state.restore()  # a kept client's round draws as a fresh client's would
        final = server_round is None or rounds is None or server_round >= rounds
        self.session.plan.curves.pace_across_sessions(final)
        self._fresh = False
        self._rounds += 1
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
            record_ending(self.experiment, failed("loss became NaN or infinite"))  # with its `ended` time
            raise ClientStopped(f"client {self.partition.index}: loss became NaN or infinite")
        epochs = self.session.plan.epochs_completed() - start
        with ema_weights_swapped_in(model, model.optimizer):
            trained = [array.copy() for array in model.get_weights()]
        logs["num-examples"] = self._examples_per_epoch() * epochs
        self.last_round = {
            "round": server_round, "epochs": epochs, "num_examples": logs["num-examples"],
            "fit_seconds": round(fit_seconds, 3),
            # settings, model, restore (in the round that builds the client), fit
            "message_seconds": round(time.monotonic() - self.message_started, 3),
        }
        self.experiment.record.client_round(self.last_round)
        return trained, logs

    def start_message(self) -> None:
        """A kept client's next message starts now (for `message_seconds` in run.json)."""
        self.message_started = time.monotonic()

    def evaluate(self, weights: Sequence[NDArray[Any]]) -> dict[str, float]:
        """The global model's metrics on this client's validation data (and `num-examples`)."""
        inputs = self.session.inputs
        model = self.session.model
        set_global_weights(model, weights, self.session.averages)
        self._fresh = False
        results = model.evaluate(inputs.val, steps=inputs.val_steps, return_dict=True, verbose=0)
        steps = inputs.val_steps or int(inputs.val.cardinality())
        return {**{key: float(value) for key, value in results.items()},
                "num-examples": max(1, steps) * self.settings.training.batch_size}

    def _examples_per_epoch(self) -> int:
        """Steps x batch size: exact but for a last partial batch, which FedAvg's weighting can ignore."""
        inputs = self.session.inputs
        steps = inputs.train_steps or int(inputs.train.cardinality())
        return max(1, steps) * self.settings.training.batch_size

    def close(self) -> None:
        """Closes the inputs and frees the model and the modules of this message's settings (a simulation actor
        serves many clients in turn). Python's garbage collection runs here only for a model of `COLLECT_BYTES`
        or more: its cycles are freed at once; a small model's are left to the collector's next pass (a full
        collection costs ~0.2 s of the round in a TensorFlow process)."""
        import keras

        try:
            large = _weights_bytes(self.session.model) >= COLLECT_BYTES
            self.session.close()
            keras.backend.clear_session(free_memory=large)
        finally:
            self._writing.close()
            self.settings.release()


def _weights_bytes(model: keras.Model) -> int:
    """The bytes of the model's weights (the optimizer's and the EMA's are of the same order)."""
    import numpy as np

    return sum(math.prod(weight.shape) * np.dtype(weight.dtype).itemsize for weight in model.weights)


class RandomState:
    """The random state a session opened with, to start a kept client's next round from it, as a fresh one would.

    `Trainer.open_session` seeds everything with the run's seed
    (`keras.utils.set_random_seed`), then builds the inputs and the model, whose
    layers (Dropout, ...) get their seed generators. `restore` seeds again with
    the same seed and puts back Python's, NumPy's and the layers' generator states
    as they were when the session had opened: a fresh client's round draws from
    exactly these.

    Args:
        seed: the run's seed (run.json's `seed`).
        model: the session's model.
    """

    def __init__(self, seed: int, model: keras.Model) -> None:
        import random

        import numpy as np

        self.seed = seed
        self.python = random.getstate()
        self.numpy = np.random.get_state()
        self.generators = [(variable, variable.numpy()) for variable in model.variables
                           if variable.path.endswith("seed_generator_state")]

    def restore(self) -> None:
        import random

        import keras
        import numpy as np

        keras.utils.set_random_seed(self.seed)
        random.setstate(self.python)
        np.random.set_state(self.numpy)
        for variable, value in self.generators:
            variable.assign(value)


def keep_callback_state(plan: CallbackPlan) -> None:
    """Before a kept session trains again: its resumable callbacks (LR on plateau) carry on from their state now.

    Their `on_train_begin` re-applies the state set when the session was
    restored, which would bring back the state of the checkpoint the session
    started from.
    """
    for counter in plan.resumable.counters():
        counter.set_state(counter.get_state())


def set_global_weights(model: keras.Model, weights: Sequence[NDArray[Any]],
                       averages: Optional[WeightAverages] = None) -> None:
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
