"""The server's side of a federation: evaluates, logs and exports the global model in its experiment folder."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, cast

from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, MetricRecordValues
    from flwr.serverapp.strategy import Strategy

    from experiments_manager.federated.federation_config import FederationConfig
    from experiments_manager.tracking.session import TrackingSession
    from experiments_manager.federated.grid import ResponsiveGrid
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings.loader import Settings
    from experiments_manager.training.fine_tuning import InitialWeights

_LOG = logging.getLogger(__name__)


class FederationStopped(Exception):
    """Too few clients connected or answered for a round to go on (minCl, minFit)."""


class FederationServer:
    """Keeps the server experiment of a federation; a round is an "epoch" of its logs.

    After every round it evaluates the global model on the settings' validation
    pipeline, then writes, exactly as a training run does: TensorBoard scalars
    (the clients' aggregated training metrics as `train`, the server's evaluation
    as `validation`), history.csv and training_curves.png, the HParams session,
    run.json, and a new exported version whenever the monitored value improves,
    so `serve --model_dir` follows the federation live. Then it checkpoints what the next round needs
    (`server_checkpoint.py`); a federation resumed in the same folder starts from that checkpoint: its rounds are
    numbered on from it (`first_round`), its records restored as a resumed run's are.

    Args:
        experiment: the server's `Experiment`.
        settings: the loaded `Settings`.
        config: the `FederationConfig`.
        tracking: the MLflow `TrackingSession` each round is logged to, a step, or None (default: not logged).
        init_from: the version a new federation's global model starts from (`--init-from`, `InitialWeights`: read
            and reported as a fine-tuned run's), or None (default: the model's own initial weights); a resumed one
            starts from its checkpoint instead.

    Example:

    ```python
    server = FederationServer(experiment, settings, config)
    strategy.start(grid, server.initial_arrays(), config.rounds, evaluate_fn=server.evaluate)
    server.finish()
    ```
    """

    def __init__(self, experiment: Experiment, settings: Settings, config: FederationConfig,
                 tracking: Optional[TrackingSession] = None, init_from: Optional[InitialWeights] = None) -> None:
        import keras

        from experiments_manager.callbacks.best_value import BestValue
        from experiments_manager.export.exporter import Exporter
        from experiments_manager.training.inputs import steps_per_epoch
        from experiments_manager.settings.pipeline import settings_pipeline
        from experiments_manager.training import RunRecords, compile_for_evaluation
        from experiments_manager.training.callback_plan import tracking_callbacks
        from experiments_manager.federated.server_checkpoint import read_checkpoint
        from experiments_manager.run.resume_state import ResumableParts

        self.experiment = experiment
        self.settings = settings
        self.config = config
        self.restored = read_checkpoint(experiment)  # a resumed federation's last recorded round, or None
        self.first_round = self.restored.rounds if self.restored is not None else 0
        self.strategy: Any = None  # the strategy whose state the checkpoint keeps (`adopt_strategy`)
        keras.utils.set_random_seed(settings.runtime.random_seed if settings.runtime.random_seed is not None else 0)
        self.model = compile_for_evaluation(settings)
        if self.restored is None and init_from is not None:  # what it took, said and in run.json as for a run
            init_from.record_transfer(experiment, init_from.load_into(self.model, settings))
        val = settings_pipeline(settings, training=False)
        self.val = val.dataset
        self.val_steps = steps_per_epoch(self.val, settings, False, val.steps)
        self.best = BestValue(settings.training.monitor)
        self.exporter = Exporter(experiment, settings, self.model)
        self.round_metrics: dict[int, dict[str, float]] = {}
        # per round: seconds since the previous round ended, and of them, the server's evaluation and export
        info = experiment.run_info()
        self.timings: list[dict[str, float]] = list((info.get("round_timings") or [])[:self.first_round])
        self.round_started = time.monotonic()
        # a round is recorded as an epoch is
        records = RunRecords(experiment, settings, self.best, self.exporter,
                             restored=self.restored.state if self.restored is not None else None)
        self.history = records.history
        self.resumable = ResumableParts(self.best, history=self.history, exports=self.exporter)  # what it checkpoints
        self._restore_records(info.get("rounds_completed") or 0)
        # the round's checkpoint after its version, before run.json and MLflow count the round
        checkpoint = _round_checkpoint(self)
        self.callbacks = keras.callbacks.CallbackList(
            [records.fence] + records.head + records.tail(checkpoint)
            + tracking_callbacks(tracking, checkpoint, records.history, self.first_round),
            model=self.model)
        self.callbacks.on_train_begin()

    def _restore_records(self, rounds_recorded: int) -> None:
        """A resumed federation: the global model, the best value, the versions and history.csv as the checkpoint's
        round left them (`ResumableParts`, `Exporter.at_resume`, as a resumed run's), and run.json's round count
        (`rounds_recorded`) when a kill came between the checkpoint and it. Without a checkpoint (a new federation,
        or one killed in its first round): what a first round left is set aside."""
        if self.restored is not None:
            self.model.set_weights(self.restored.weights)
            saved = self.restored.state.get("callbacks", {})
            self.resumable.restore_counters(saved)
            if "history" in saved:
                self.history.set_state(saved["history"])
        self.exporter.at_resume(self.first_round if self.restored is not None else None)
        self.history.truncate(self.first_round)
        if self.restored is None:
            return
        if rounds_recorded < self.first_round:
            self.experiment.record.round(self.first_round, self.timings)
        _LOG.info("Resuming the federation after round %d (%s)", self.first_round,
                  self.experiment.checkpoints_dir)

    def initial_arrays(self) -> ArrayRecord:
        """The global model the next round starts from: the settings' initial one, or the checkpoint's."""
        from flwr.app import ArrayRecord

        return ArrayRecord(self.model.get_weights())

    def adopt_strategy(self, strategy: Any) -> None:
        """Keeps the `strategy` whose state the checkpoint saves; a resumed one gets its saved state back."""
        from experiments_manager.federated.server_checkpoint import restore_strategy

        self.strategy = strategy
        if self.restored is not None:
            restore_strategy(strategy, self.restored.strategy)

    def record(self, server_round: int, metrics: Optional[Mapping[str, Any]], prefix: str = "") -> None:
        """Keeps a round's aggregated client metrics for its log line (`prefix`: 'clients_val_' for evaluations)."""
        for key, value in (metrics or {}).items():
            if key != "num-examples":
                self.round_metrics.setdefault(server_round, {})[prefix + key] = float(value)

    def evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        """Flower's `evaluate_fn`: the global model on the validation data; logs and exports after round >= 1."""
        from flwr.app import MetricRecord

        evaluation_started = time.monotonic()
        round_number = self.first_round + server_round  # Flower counts a resumed federation's rounds from 1 again
        self.model.set_weights(arrays.to_numpy_ndarrays())
        results = self.model.evaluate(self.val, steps=self.val_steps, return_dict=True, verbose=0)
        evaluation = {f"val_{key}": float(value) for key, value in results.items()}
        if server_round == 0:
            _LOG.info("Global model before round %d: %s", round_number + 1, _format(evaluation))
            self.round_started = time.monotonic()
            return MetricRecord(cast("dict[str, MetricRecordValues]", evaluation))
        logs = {**self.round_metrics.pop(round_number, {}), **evaluation}
        self.callbacks.on_epoch_end(round_number - 1, logs)
        took = time.monotonic() - self.round_started
        self.timings.append({"round_seconds": round(took, 3),
                             "server_seconds": round(time.monotonic() - evaluation_started, 3)})
        self.round_started = time.monotonic()
        self.experiment.record.round(round_number, self.timings)
        exported = self.best.improved_at(round_number - 1)
        _LOG.info("Round %d/%d (%.1f s): %s%s", round_number, self.config.rounds, took, _format(logs),
                  f"; exported version {self.exporter.last_version()}" if exported else "")
        return MetricRecord(cast("dict[str, MetricRecordValues]", evaluation))

    def checkpoint(self, round_number: int) -> None:
        """Writes what the round after `round_number` needs (`server_checkpoint.py`), durably."""
        from experiments_manager.federated.server_checkpoint import strategy_state, write_checkpoint
        from experiments_manager.run.resume_state import CHECKPOINT_STATE_VERSION

        write_checkpoint(self.experiment, self.model.get_weights(), strategy_state(self.strategy), {
            "state_version": CHECKPOINT_STATE_VERSION, "epochs_completed": round_number,
            "callbacks": self.resumable.states()})

    def finish(self) -> None:
        self.callbacks.on_train_end()


def _round_checkpoint(server: FederationServer) -> Any:
    """The callback that writes the server's checkpoint at a round's end (`FederationServer.checkpoint`), placed
    after the version is exported and before run.json's and MLflow's records, which it tells when it is durable
    (`when_durable`, as `TrainingCheckpoint` does: here at once, the write being on this thread)."""
    import keras

    class RoundCheckpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Optional[Mapping[str, Any]] = None) -> None:
            server.checkpoint(epoch + 1)  # `evaluate` ends round N as epoch N - 1

        def when_durable(self, function: Any) -> None:
            function()

    return RoundCheckpoint()


def supervised_strategy(config: FederationConfig, server: FederationServer) -> Strategy:
    """The strategy named in the settings, made to stop with a clear message instead of waiting forever.

    Flower's strategies wait without limit for `minCl` nodes, and aggregate
    whatever replies came. Here a round waits at most `config.round_timeout` for
    `minCl` clients, needs `minFit` training replies, and hands each round's
    aggregated metrics to the `server` for its logs. Clients are asked to
    evaluate only when `config.client_evaluation` says so.
    """
    base: Any = config.strategy_class()  # chosen at runtime: mypy checks no override against it

    class Supervised(base):
        """Flower numbers a resumed federation's rounds from 1: each method numbers them on from the checkpoint
        (`server.first_round`), for the clients, the strategy's own state (FedAdam's bias correction) and the logs."""

        sampled = 0  # clients asked to train in the current round

        def configure_train(self, server_round: int, arrays: ArrayRecord, round_config: ConfigRecord,
                            grid: ResponsiveGrid) -> list[Message]:
            server_round += server.first_round
            _wait_for_clients(grid, config.min_clients, config.round_timeout, server_round)
            messages = list(super().configure_train(server_round, arrays, round_config, grid))
            self.sampled = len(messages)  # replies that miss the round timeout are dropped, not failed
            return messages

        def configure_evaluate(self, server_round: int, arrays: ArrayRecord, round_config: ConfigRecord,
                               grid: ResponsiveGrid) -> Iterable[Message]:
            server_round += server.first_round
            if not config.client_evaluation:  # the server evaluates: one message per client and round
                return []
            _wait_for_clients(grid, config.min_clients, config.round_timeout, server_round)
            return cast("Iterable[Message]", super().configure_evaluate(server_round, arrays, round_config, grid))

        def aggregate_train(self, server_round: int, replies: Iterable[Message]
                            ) -> tuple[Optional[ArrayRecord], Optional[MetricRecord]]:
            server_round += server.first_round
            replies = list(replies)
            answered = [reply for reply in replies if not reply.has_error()]
            if len(answered) < config.min_fit:
                silent = self.sampled - len(replies)
                raise FederationStopped(
                    f"round {server_round}: {len(answered)} of {self.sampled} clients returned weights, "
                    f"minFit={config.min_fit} required{_errors_of(replies)}"
                    + (f"; {silent} did not answer within {config.round_timeout:g} s" if silent > 0 else "")
                )
            arrays, metrics = super().aggregate_train(server_round, replies)
            server.record(server_round, metrics)
            return arrays, metrics

        def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> Optional[MetricRecord]:
            server_round += server.first_round
            metrics: Optional[MetricRecord] = super().aggregate_evaluate(server_round, replies)
            server.record(server_round, metrics, prefix="clients_val_")
            return metrics

    Supervised.__name__ = Supervised.__qualname__ = base.__name__
    try:
        return Supervised(**config.strategy_arguments())
    except (TypeError, ValueError) as error:
        raise UserInputError(f"{server.settings.path.name}: hparams: {config.strategy_name}: {error}") from None


def _wait_for_clients(grid: "ResponsiveGrid", needed: int, timeout: float, server_round: int) -> None:
    """Returns once `needed` clients are connected; raises `FederationStopped` after `timeout` seconds, or
    `FederationInterrupted` once a signal reached the federation (the grid `apps.py` hands to the strategy)."""
    deadline = time.monotonic() + timeout
    while len(list(grid.get_node_ids())) < needed:
        grid.check_stop()  # a signal reached the federation
        if time.monotonic() > deadline:
            connected = len(list(grid.get_node_ids()))
            raise FederationStopped(f"round {server_round}: {connected} of the minCl={needed} clients connected "
                                    f"after {timeout:g} s (federated_round_timeout_secs)")
        time.sleep(0.2)


def _errors_of(replies: Iterable[Message]) -> str:
    errors = sorted({_last_line(reply.error.reason) for reply in replies if reply.has_error()})
    return f"; client errors: {' | '.join(errors)}" if errors else ""


def _last_line(reason: Optional[str]) -> str:
    """An error's last line (a traceback's exception): Flower's `Error.reason` may be None or empty."""
    lines = (reason or "").strip().splitlines()
    return lines[-1] if lines else "no reason given"


def _format(logs: Mapping[str, float]) -> str:
    return ", ".join(f"{key}={value:.4g}" for key, value in logs.items())
