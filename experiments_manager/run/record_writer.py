"""run.json's changes as a run goes on: one named transition each, typed, one writer thread at a time.

`Experiment.record` is the experiment's `RunRecordWriter`. Each transition (`begin_attempt`, `devices`, `seed`,
`epoch`, `versions`, `round`, `end`, ...) reads run.json, changes the keys it owns and replaces the file atomically
(temporary file, fsync, rename, the folder fsynced) after checking that this process still holds the experiment's
lease; mypy checks every key against `record.RunRecord`. The bytes written are those of `record.py`'s definition:
no key is renamed. Epoch progress is recorded by `callbacks.RunInfoUpdater` once the epoch's checkpoint is
durable, so run.json never claims an epoch its checkpoint does not hold. This module does not import TensorFlow.

Example:

```python
experiment.record.seed(1234, xla=False)
experiment.record.end(endings.finished())     # (endings go through `lifecycle.record_ending`)
```
"""

from __future__ import annotations

import json
import socket
import threading
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Optional, Protocol, Sequence, TypedDict, cast

from experiments_manager.run.attempts import Attempt, settings_folder
from experiments_manager.run.attempts import git_commit as _git_commit
from experiments_manager.run.names import now
from experiments_manager.run.record import RUN_RECORD_VERSION, AttemptFields, RunRecord, Status
from experiments_manager.run.space_reserve import on_full_disk_use_reserve

if TYPE_CHECKING:
    from pathlib import Path

    from experiments_manager.run.endings import Ending

# top-level fields that describe how the latest attempt ended: a resume clears them (its `attempts` entry keeps them)
_LATEST_ATTEMPT_FIELDS: tuple[Literal["ended", "reason", "error", "traceback", "exit_code", "stopped_early"], ...] = (
    "ended", "reason", "error", "traceback", "exit_code", "stopped_early")


class VersionProgress(TypedDict):
    """What run.json records of a run's exports (`export.Exporter.progress`)."""

    exported_versions: list[int]
    last_exported_version: Optional[int]
    version_records: Mapping[str, Mapping[str, object]]  # `version_records.VersionRecord`s


class EpochProgress(TypedDict):
    """What run.json records at an epoch's end (`callbacks.RunInfoUpdater`)."""

    epochs_completed: int
    best_value: Optional[float]
    best_epoch: Optional[int]
    last_epoch_logs: dict[str, float]


class RecordedFolder(Protocol):
    """What the writer uses of an `experiment.Experiment` (which holds its writer: no import back)."""

    root: Path

    @property
    def logs_dir(self) -> Path: ...

    def run_info(self) -> RunRecord: ...

    def write_run_info(self, info: RunRecord) -> None: ...


def jsonable(value: object) -> Any:
    """`value` as JSON reads it back (numpy numbers, paths and enums as JSON's)."""
    return json.loads(json.dumps(value, default=str))


def first_record(settings: Any, command: Sequence[str], started: str, repeat: str) -> RunRecord:
    """run.json of a new run, as `Experiment.create` writes it before its first attempt trains.

    Args:
        settings: the run's `Settings`.
        command: the command line that started it.
        started: when (ISO time, the moment its folder is named after).
        repeat: its repeat label ('1' for a second run of the same name in the same second, else '').
    """
    from experiments_manager.run.attempts import package_versions

    commit = _git_commit(settings.script.resolve().parent)
    return {
        "record_version": RUN_RECORD_VERSION,
        "status": Status.RUNNING,
        "command": list(command),
        "settings_file": str(settings.script.resolve()) if settings.from_file else None,  # the user's file
        "settings_object": None if settings.from_file else settings.path.name,
        "model_name": settings.model_name,
        "model_file": str(settings.model_script.resolve()),  # the user's file, `__file__` on resume
        "session_name": settings.experiment.session_name,
        "hparams": jsonable(settings.experiment.hparams),
        "hparam_overrides": jsonable(settings.overrides),
        "monitored_loss_name": settings.training.monitor,
        "nbEpoch": settings.training.epochs,
        "tensorflow_server_port": settings.serving.port,  # what `serve --model_dir` listens on by default
        "versions": package_versions(),
        "git_commit": commit,
        "host": socket.gethostname(),
        "started": started,
        "attempts": [Attempt.starting(command, 1, started=started, git_commit=commit).as_json()],
        "repeat": repeat,
        "ended": None, "epochs_completed": 0, "best_value": None, "best_epoch": None,
        "exported_versions": [], "last_exported_version": None,
    }


class RunRecordWriter:
    """The transitions of one experiment's run.json.

    Args:
        experiment: the `Experiment` whose run.json it writes (its lease, when held, fences every write).
    """

    def __init__(self, experiment: RecordedFolder) -> None:
        self._experiment = experiment
        self._lock = threading.Lock()  # the training thread's changes and a checkpoint thread's
        self.ending: Optional[Ending] = None  # the ending this process recorded for the attempt (`end`), if any

    def _update(self, fields: RunRecord, attempt: Optional[AttemptFields] = None) -> RunRecord:
        """Sets `fields` (and `attempt`'s in this attempt's entry of `attempts`) in one atomic replace."""
        with self._lock:
            info = self._experiment.run_info()
            info.update(jsonable(fields))
            if attempt and info.get("attempts"):
                info["attempts"][-1].update(jsonable(attempt))
            self._experiment.write_run_info(info)
            return info

    def begin_attempt(self, command: Sequence[str], accepted_code_change: Iterable[str] = (),
                      epochs: Optional[int] = None, extended_from: Optional[int] = None) -> RunRecord:
        """A new attempt (`command`) continues the run: running, the previous attempt's ending forgotten at the top
        level (kept in its `attempts` entry; one killed outright is marked interrupted there).

        Args:
            command: the resuming command line.
            accepted_code_change: the changed files the user accepted to resume with (default none).
            epochs, extended_from: an extension's `Attempt` fields (default None); `epochs` is run.json's `nbEpoch`.
        """
        with self._lock:
            info = self._experiment.run_info()
            attempts = info["attempts"]  # `migrations` gives a record of an earlier engine its first attempt
            for stale in _LATEST_ATTEMPT_FIELDS:
                info.pop(stale, None)
            if attempts and attempts[-1].get("status") == Status.RUNNING:  # killed outright: nothing recorded it
                attempts[-1].update(status=Status.INTERRUPTED.value,
                                    reason="ended without recording why (killed, or its node was lost)")
            attempt = Attempt.starting(command, len(attempts) + 1)
            attempt.git_commit = _git_commit(settings_folder(info, self._experiment.root))
            attempt.accepted_code_change = list(accepted_code_change)
            attempt.epochs, attempt.extended_from = epochs, extended_from
            attempts.append(attempt.as_json())
            self.ending = None
            info.update({"status": Status.RUNNING, "resumed_by": list(command), "host": attempt.host,
                         "record_version": RUN_RECORD_VERSION})
            if epochs or info.get("nbEpoch"):  # (neither: a record made by hand, without it)
                info["nbEpoch"] = cast(int, epochs or info.get("nbEpoch"))
            self._experiment.write_run_info(info)
            return info

    def devices(self, devices: Sequence[str], count: int, kind: str) -> None:
        """The devices this attempt trains on (`count` of `kind`, 'gpu' or 'cpu', for `device_hours`)."""
        self._update({"devices": list(devices)}, {"devices": count, "device_kind": kind})

    def workers(self, workers: int, source: str) -> None:
        """A multi-worker run: its number of workers and where the cluster was described (`source`)."""
        self._update({"workers": workers, "cluster_source": source,
                      "distribution_strategy": "MultiWorkerMirroredStrategy"})

    def seed(self, seed: int, xla: bool) -> None:
        """The run's random seed, and whether XLA compiles it."""
        self._update({"seed": seed, "xla": xla})

    def learning_rate(self, rate: float) -> None:
        """The rate the optimizer trains at."""
        self._update({"learning_rate": rate})

    def precision(self, half: bool) -> None:
        """Whether the model computes in half precision, however the settings set it."""
        self._update({"mixed_precision": half})

    def code(self, identity: Mapping[str, Optional[str]]) -> None:
        """The SHA-256 of the code this attempt runs (`attempts.code_identity`), in its `attempts` entry."""
        self._update({}, {"code": dict(identity)})

    def monitor_mode(self, mode: str) -> None:
        """Which way the monitored value is better ('min' or 'max'), once decided."""
        self._update({"monitor_mode": mode})

    def fine_tuned_from(self, lineage: Mapping[str, Any]) -> None:
        """The run and version a fine-tuned run started from (`fine_tuning.InitialWeights`)."""
        self._update({"fine_tuned_from": dict(lineage)})

    def kafka_servers(self, servers: str) -> None:
        """The Kafka brokers a run trained from Kafka reads (a resume reads them again)."""
        self._update({"kafka_bootstrap_servers": servers})

    def kafka(self, progress: Mapping[str, Any]) -> None:
        """Fields of a Kafka run's `kafka` block (its topics and group, the records it read: totals over its
        attempts; the offsets the broker acknowledged), set over what the block holds, in one atomic replace."""
        with self._lock:
            info = self._experiment.run_info()
            info["kafka"] = {**(info.get("kafka") or {}), **jsonable(dict(progress))}
            self._experiment.write_run_info(info)

    def epoch(self, progress: EpochProgress, versions: Optional[VersionProgress] = None) -> None:
        """An epoch's end, recorded once its checkpoint is durable (`versions`: the exports then, default None)."""
        fields: RunRecord = {"epochs_completed": progress["epochs_completed"], "best_value": progress["best_value"],
                             "best_epoch": progress["best_epoch"], "last_epoch_logs": progress["last_epoch_logs"]}
        self._update({**fields, **(_versions(versions) if versions is not None else {})})

    def versions(self, versions: VersionProgress) -> None:
        """The versions on disk, the last one, and each version's record."""
        self._update(_versions(versions))

    def sweep(self, folder: str) -> None:
        """The sweep folder a trial belongs to."""
        self._update({"sweep": folder})

    def mlflow(self, changes: Mapping[str, Any]) -> None:
        """What run.json's `mlflow` gains (`tracking_uri`, `experiment`, once known `experiment_id` and `run_id`),
        merged into what it holds, under the lock (the MLflow bridge's thread records the run)."""
        with self._lock:
            info = self._experiment.run_info()
            info["mlflow"] = {**(info.get("mlflow") or {}), **jsonable(changes)}
            self._experiment.write_run_info(info)

    def checkpoints_pruned(self) -> None:
        """`prune --checkpoints` deleted the run's checkpoints now."""
        self._update({"checkpoints_pruned": now()})

    def federation(self, description: Mapping[str, Any]) -> None:
        """A federated server's strategy and rounds as configured."""
        self._update({"federated": dict(description)})

    def flower_run(self, run_id: Any, superlink: str) -> None:
        """The Flower run a deployed federation is, and its SuperLink."""
        self._update({"flower_run_id": run_id, "superlink": superlink})

    def round(self, rounds_completed: int, timings: list[Any]) -> None:
        """A federated server's round completed (`timings`: each round's)."""
        self._update({"rounds_completed": rounds_completed, "round_timings": timings})

    def federated_client(self, partition_id: int, num_partitions: int) -> None:
        """A federated client's partition."""
        self._update({"federated_client": {"partition_id": partition_id, "num_partitions": num_partitions}})

    def client_round(self, last_round: Mapping[str, Any]) -> None:
        """A federated client's last round (`round`, `epochs`, `num_examples`, timings)."""
        self._update({"last_round": dict(last_round)})

    def end(self, ending: Ending, stopped_early: Optional[bool] = None) -> RunRecord:
        """How the attempt ended (`endings.Ending`), in run.json, its `attempts` entry and TensorBoard's HParams table.

        Args:
            ending: the ending, from `endings`' table.
            stopped_early: a finished run's: whether early stopping ended it (default None: not recorded).
        """
        from experiments_manager.run.hparams_status import write_status

        ended = now()
        fields: RunRecord = {"status": ending.status, "ended": ended}
        if ending.status == Status.INTERRUPTED:  # a finished or failed run's code is its attempt's (as written since 1)
            fields["exit_code"] = ending.exit_code
        if ending.reason is not None:
            fields["reason"] = ending.reason
        if ending.error is not None:
            fields["error"] = ending.error
        if ending.traceback is not None:
            fields["traceback"] = ending.traceback
        if stopped_early is not None:
            fields["stopped_early"] = stopped_early
        info = on_full_disk_use_reserve(self._experiment.root, lambda: self._update(fields, {
            "status": ending.status, "ended": ended, "exit_code": ending.exit_code, "reason": ending.reason,
            "error": ending.error}))  # a full disk's ending is recorded in the space the attempt kept for it
        self.ending = ending
        write_status(self._experiment.logs_dir, ending.status.value)
        return info

    def end_if_running(self, ending: Ending) -> Optional[RunRecord]:
        """`end`, when run.json still says running: the ending of a process that could not record its own (it
        crashed, was killed, or ran on another host); None when it had."""
        if self._experiment.run_info().get("status") != Status.RUNNING:
            return None
        return self.end(ending)


def _versions(versions: VersionProgress) -> RunRecord:
    return {"exported_versions": versions["exported_versions"],
            "last_exported_version": versions["last_exported_version"],
            "version_records": {version: dict(record) for version, record in versions["version_records"].items()}}
