"""run.json, the record each experiment folder holds: its one typed definition.

`RunRecord` is the record's type (what `Experiment.run_info()` returns: mypy checks the keys code reads by name);
`KEYS` says, for every key, its JSON type and what it means, in the groups the reference page shows
(`docs/reference/run-json.md` is generated from it: `reference_markdown`, checked by tests/e2e/test_docs.py).
`record_problems` checks a record read from disk against both. Keys written by the original framework's tools keep
their names (`nbEpoch`, `monitored_loss_name`, `tensorflow_server_port`).

`Status` is a run's status (run.json's `status`, each attempt's, a sweep's and its trials' records). Code writes
the record through `record_writer.RunRecordWriter`'s named transitions, never by key.

Long because every key of run.json is defined here, once, with its type and meaning: the keys are one table.

Versions: `record_version` is 2 in records written since it was introduced; a record without it was written by an
earlier version of the engine (version 1: the same keys, none of them renamed), and reads the same.

Example:

```python
info: RunRecord = experiment.run_info()
info.get("best_epoch")                       # int | None
record_problems(json.loads(text))            # [] for a well-formed record, else one line per problem
```
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable, Optional, TypedDict

from experiments_manager.run.served_layout import model_name_problem

RUN_RECORD_VERSION = 2


class Status(enum.StrEnum):
    """How a run (or an attempt, a sweep, a trial) stands: the `status` its record holds.

    A str enum: `Status.FINISHED == "finished"`, JSON writes it as the string, and `str()` and f-strings give the
    word. `migrations.current_run_record` gives a record's status as a member (an unknown word stays as it is, for
    `record_problems` to name).

    Example:

    ```python
    experiment.run_info().get("status") == Status.FINISHED
    ```
    """

    RUNNING = "running"
    FINISHED = "finished"  # trained to its end (or stopped early by its own rule)
    FAILED = "failed"  # bad input, an error of the code, a loss that became NaN: a resume would fail again
    INTERRUPTED = "interrupted"  # a signal, a full disk, stalled data, a lost node: resumable as it is


STATUSES: tuple[str, ...] = tuple(status.value for status in Status)


class AttemptFields(TypedDict, total=False):
    """What an attempt's entry of `attempts` gains as the attempt goes on (see `attempts.Attempt`)."""

    devices: int
    device_kind: str
    code: dict[str, Optional[str]]
    status: Status
    ended: Optional[str]
    exit_code: Optional[int]
    reason: Optional[str]
    error: Optional[str]


class RunRecord(TypedDict, total=False):
    """run.json as code reads it (every key optional: a record grows as the run goes on). See `KEYS`."""

    record_version: int
    status: Status
    reason: Optional[str]
    error: Optional[str]
    traceback: list[str]
    exit_code: Optional[int]
    ended: Optional[str]
    epochs_completed: int
    nbEpoch: int
    monitored_loss_name: str
    monitor_mode: str
    best_value: Optional[float]
    best_epoch: Optional[int]
    stopped_early: bool
    last_epoch_logs: dict[str, Any]
    learning_rate: float
    checkpoints_pruned: str
    checkpoints_link: str
    command: list[str]
    settings_file: Optional[str]
    settings_object: Optional[str]
    model_file: str
    model_name: str
    session_name: str
    hparams: dict[str, Any]
    hparam_overrides: dict[str, Any]
    repeat: str
    seed: int
    devices: list[Any]
    workers: int
    cluster_source: str
    distribution_strategy: str
    mixed_precision: bool
    xla: bool
    versions: dict[str, Optional[str]]
    git_commit: Optional[str]
    host: str
    resumed_by: list[str]
    started: str
    fine_tuned_from: dict[str, Any]
    sweep: str
    kafka: dict[str, Any]
    kafka_bootstrap_servers: str
    mlflow: dict[str, Any]
    tensorflow_server_port: int
    attempts: list[dict[str, Any]]
    exported_versions: list[int]
    last_exported_version: Optional[int]
    version_records: dict[str, dict[str, Any]]
    evaluations: list[dict[str, Any]]
    federated: dict[str, Any]
    federated_client: dict[str, Any]
    flower_run_id: Any
    superlink: str
    last_round: dict[str, Any]
    rounds_completed: int
    round_timings: list[Any]


@dataclasses.dataclass(frozen=True)
class Key:
    """One row of the reference: keys documented together.

    Args:
        names: the keys.
        json: their JSON type ('string', 'integer', 'number', 'boolean', 'array', 'object' or 'any'), '?' appended
            when null is allowed.
        what: what they mean.
        group: the reference section they are in.
        valid: a rule a value of the JSON type must also follow (default None: none); `expected` says it.
    """

    names: tuple[str, ...]
    json: str
    what: str
    group: str
    valid: Optional[Callable[[Any], bool]] = None
    expected: str = ""


def _model_name(value: str) -> bool:
    """The rule every served model name meets (`served_layout.model_name_problem`): no folder in it, so a name read
    from a folder never leads out of it."""
    return model_name_problem(value) is None


def _absolute_path(value: str) -> bool:
    """An absolute path with no `..` in it (a place the user's settings named, as the engine recorded it)."""
    return value.startswith("/") and ".." not in value.split("/")


def _version_number(value: Any) -> bool:
    """A version's number: a whole number (not a path, not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


STATUS, WHAT_RAN, VERSIONS, DISTRIBUTED = ("Status and outcome", "What ran", "Versions and evaluations",
                                           "Federated and multi-worker runs")
KEYS: tuple[Key, ...] = (
    Key(("record_version",), "integer", "the record's format: 2 (a record without it was written by an earlier "
        "engine, with the same keys)", STATUS),
    Key(("status",), "string", "`running`, `finished`, `failed` or `interrupted` (a signal, a full disk, a Kafka "
        "stall: resumable with `train --resume`)", STATUS),
    Key(("reason", "error", "exit_code", "ended"), "any?", "of the latest attempt only (the error line of a failed "
        "run: the settings function and its line)", STATUS),
    Key(("traceback",), "array", "a failed run's traceback lines, the user's frames first", STATUS),
    Key(("epochs_completed",), "integer", "epochs trained, counted from 1", STATUS),
    Key(("nbEpoch",), "integer", "the epochs the run trains; `train --resume --epochs N` sets it to N", STATUS),
    Key(("monitored_loss_name", "monitor_mode"), "string", "the monitored value and which way is better, as decided "
        "and logged ([settings](settings.md#which-way-is-better))", STATUS),
    Key(("best_value", "best_epoch"), "number?", "the best monitored value and the epoch that reached it", STATUS),
    Key(("stopped_early", "last_epoch_logs"), "any", "whether early stopping ended the run; the last epoch's "
        "metrics", STATUS),
    Key(("learning_rate",), "number", "the rate the optimizer trains at (a warning says when it is not "
        "`get_learningRate()`'s)", STATUS),
    Key(("checkpoints_pruned",), "string", "when `prune --checkpoints` deleted the run's `checkpoints/` (it can no "
        "longer be resumed or extended)", STATUS),
    Key(("checkpoints_link",), "string", "where `checkpoints/` links to when the settings' `checkpoints_folder` put "
        "the run's checkpoints elsewhere (scratch storage); the one link a writer follows in the folder, and only "
        "while the link leads there", STATUS, _absolute_path, "an absolute path without '..'"),
    Key(("command",), "array", "the command line of the first attempt; a sweep trial's is the `experiments-manager "
        "train` command that reproduces it alone", WHAT_RAN),
    Key(("settings_file", "model_file"), "string?", "the user's files (their copies in the folder are what a resume "
        "runs, with `__file__` and the importable folder of these)", WHAT_RAN),
    Key(("settings_object",), "string?", "for settings built in Python (a notebook's), their label; then "
        "`settings_file` is null", WHAT_RAN),
    Key(("model_name",), "string", "the served model's name: the model file's name without `.py`", WHAT_RAN,
        _model_name, "a model name without '/', '..' or spaces (the model file's name without .py)"),
    Key(("session_name", "hparams", "hparam_overrides"), "any", "the settings' session name and hparams, and those "
        "set with `--hparam`", WHAT_RAN),
    Key(("repeat", "seed"), "any", "the run's repeat label and its random seed", WHAT_RAN),
    Key(("devices", "mixed_precision", "xla"), "any", "the devices it trained on; whether the model computed in half "
        "precision (a mixed-precision policy, however the settings set it); whether XLA was on", WHAT_RAN),
    Key(("versions",), "object", "python, tensorflow, keras and experiments_manager versions (`experiments-manager "
        "diff` compares them)", WHAT_RAN),
    Key(("git_commit", "host"), "string?", "the git commit of the settings' folder; the machine of the latest "
        "attempt", WHAT_RAN),
    Key(("resumed_by",), "array", "the command line of the latest resume", WHAT_RAN),
    Key(("started",), "string", "when the run began", WHAT_RAN),
    Key(("fine_tuned_from",), "object", "`{\"run\": \"<absolute path>\", \"version\": N, \"weights_loaded\": 12, "
        "\"weights\": 14, \"blocks\": {\"encoder\": [12, 12], \"head\": [0, 2]}}` for a run started with `--init-from` "
        "(what each top-level block of the model took; with `--skip-mismatch`, `skipped`: a phrase per weight left "
        "as built)", WHAT_RAN),
    Key(("sweep",), "string", "for a sweep's trial: its sweep folder", WHAT_RAN),
    Key(("kafka", "kafka_bootstrap_servers"), "any", "for a run trained from Kafka: the brokers, and how many records "
        "the run read", WHAT_RAN),
    Key(("mlflow",), "object", "for a run logged to MLflow (`--mlflow`): `tracking_uri`, `experiment` (its MLflow "
        "experiment's name), `registered_model` (what its improving versions join), and once the server made it, `experiment_id` and `run_id` (every attempt continues "
        "that run)", WHAT_RAN),
    Key(("tensorflow_server_port",), "integer", "the gRPC port `serve --model_dir` listens on by default (the "
        "settings' `tensorflow_server_port`)", WHAT_RAN),
    Key(("attempts",), "array", "every attempt at the run, each an object: see below", WHAT_RAN,
        lambda attempts: all(isinstance(entry, dict) for entry in attempts), "an array of objects"),
    Key(("exported_versions",), "array", "the versions on disk (a version is listed once it is on disk)", VERSIONS,
        lambda versions: all(_version_number(number) for number in versions), "an array of version numbers"),
    Key(("last_exported_version",), "integer?", "the last version written before the run reports", VERSIONS,
        _version_number, "a version number"),
    Key(("version_records",), "object", "per version, the epoch whose EMA weights it holds and the value they "
        "reached: `{\"3\": {\"epoch\": 2, \"monitor\": \"val_loss\", \"value\": 0.0123, \"at\": ...}}`, kept for "
        "versions the retention removed (also in each version's `assets.extra/version_record.json` and its served "
        "metadata)", VERSIONS),
    Key(("evaluations",), "array", "written by earlier engines only (each `evaluate`, newest last: `version`, `data`, "
        "`metrics`, `at`, `report`); an evaluation is now its own folder, `evaluations/<stamp>-v<N>/evaluation.json`, "
        "which `list` and `diff` read", VERSIONS),
    Key(("workers",), "integer", "a multi-worker run's number of workers", DISTRIBUTED),
    Key(("cluster_source", "distribution_strategy"), "string", "a multi-worker run's cluster description "
        "(`TF_CONFIG`, `Slurm`) and its strategy", DISTRIBUTED),
    Key(("federated", "flower_run_id", "superlink"), "any", "a federated server's run: its strategy and rounds as "
        "configured, Flower's run id, the SuperLink it ran on", DISTRIBUTED),
    Key(("rounds_completed", "round_timings"), "any", "a federated server's rounds: how many completed, and each "
        "round's timings", DISTRIBUTED),
    Key(("federated_client",), "object", "a federated client's run: its partition and the rounds it trained",
        DISTRIBUTED),
    Key(("last_round",), "object", "a federated client's last round: `round`, `epochs`, `num_examples`, "
        "`fit_seconds`, `message_seconds`", DISTRIBUTED),
)

_JSON_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "number": (int, float),
                                            "boolean": (bool,), "array": (list,), "object": (dict,)}


def record_problems(data: object, where: str = "run.json") -> list[str]:
    """What makes `data` not a run record: one line per key whose value has the wrong JSON type (keys the
    definition does not know are kept and not reported: a newer engine's).

    Example:

    ```python
    record_problems({"status": 3})   # ["run.json: status: expected a string, got 3"]
    ```
    """
    if not isinstance(data, dict):
        return [f"{where}: expected a JSON object, got {type(data).__name__}"]
    problems = []
    version = data.get("record_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= RUN_RECORD_VERSION:
        problems.append(f"{where}: record_version: expected 1..{RUN_RECORD_VERSION}, got {version!r} (a newer "
                        "engine's record: upgrade experiments_manager)")
    for key in KEYS:
        kind, nullable = key.json.rstrip("?"), key.json.endswith("?")
        if kind == "any":
            continue
        for name in key.names:
            if name not in data or (data[name] is None and nullable):
                continue
            value = data[name]
            wrong_bool = isinstance(value, bool) and kind in ("integer", "number")
            if wrong_bool or not isinstance(value, _JSON_TYPES[kind]):
                problems.append(f"{where}: {name}: expected {'an' if kind[0] in 'aio' else 'a'} {kind}"
                                f"{' or null' if nullable else ''}, got {value!r:.60}")
            elif key.valid is not None and not key.valid(value):
                problems.append(f"{where}: {name}: expected {key.expected}, got {value!r:.60}")
    if isinstance(data.get("status"), str) and data["status"] not in STATUSES:
        problems.append(f"{where}: status: expected one of {', '.join(STATUSES)}, got {data['status']!r:.60}")
    return problems


ATTEMPT_KEYS: tuple[tuple[str, str], ...] = (
    ("`number`, `command`", "its number (from 1) and command line"),
    ("`host`, `pid`", "where it ran"),
    ("`slurm_job_id`, `slurm_array_task_id`, `slurm_restart_count`", "its Slurm job, array task and restart count"),
    ("`container`", "the Apptainer image it ran in"),
    ("`started`, `ended`, `status`, `exit_code`, `reason`, `error`", "how it went"),
    ("`git_commit`, `code`", "the git commit and the SHA-256 of the code it ran (the settings and model copies, and "
     "your own modules they import: files outside the Python installation and site-packages)"),
    ("`accepted_code_change`", "the files whose change `--accept-code-change` (or `--settings-source original`) "
     "accepted"),
    ("`epochs`, `extended_from`", "for an extension (`--epochs N`, `--more-epochs K`): N, and the epochs the run had"),
    ("`devices`, `device_kind`", "how many devices it trained on: GPUs (`gpu`), or the CPU cores it could use "
     "(`cpu`); `list`'s `device_hours` sums each attempt's wall time times these (times `workers`)"),
)

_INTRO = """# run.json

<!-- generated by `python tools/docs/gen_reference.py` from experiments_manager/run/record.py: do not edit -->

Each experiment folder holds one `run.json` ([The experiment folder](folder-layout.md)): the run's status,
command, hparams, seed, versions, git commit, host, times, best value and epoch, exported versions, attempts (one
per train / resume), version records (the epoch and value each version holds) and evaluations. It is written
atomically (temporary name, fsync, rename, the folder fsynced) by the run that holds the folder's lease, so a node
that loses power keeps what run.json says exists. `experiments-manager list --format json` and `em.list_runs`
read it; `serve --model_dir` tolerates a damaged one (one warning, the model's name read from the folder). Its one
definition is `experiments_manager/run/record.py` (`RunRecord`, the types code reads; `KEYS`, this page).

A folder is data, whoever wrote it: every command reads run.json through one validating reader. A key of the wrong
type, a `model_name` with a folder in it (`../elsewhere/model`), versions that are not numbers, an unknown status:
one line naming the file and the key, exit code 2, before any of the run's code is imported or anything written
(`list` shows the run as `unreadable run.json (bad model_name)`). The `sweep` a trial's record names is not
followed: a trial's sweep is the folder holding it. Nothing is written through a symbolic link inside a run's folder
(the tool makes none): a resume or an evaluation of a folder holding one is refused in one line naming it. The MLflow
server `mlflow.tracking_uri` names is checked as `--mlflow`'s would be (a store's URI refused) before a resume or
`mlflow sync` sends anything there, and a resume says it first.
"""

_OUTRO = """
## lease.json

Beside run.json while a run writes the folder: the holder's host, pid, boot id, Slurm job and a heartbeat renewed
every 50 s. See "One writer per experiment" in [Resume, extend, fine-tune](../how-to/resume.md).
"""


def _table(rows: list[tuple[str, ...]], head: str = "| key | type | what |") -> list[str]:
    return [head, "|---|---|---|" if head.count("|") == 4 else "|---|---|", *(
        f"| {' | '.join(row)} |" for row in rows)]


def _group_section(group: str) -> list[str]:
    """One group's heading and table of keys, with their JSON types."""
    return [f"## {group}", "", *_table([(", ".join(f"`{n}`" for n in key.names), key.json.replace("?", " or null"),
                                         key.what) for key in KEYS if key.group == group]), ""]


def reference_markdown() -> str:
    """docs/reference/run-json.md: the keys by group, their JSON types, the attempts' keys."""
    lines = [_INTRO, *_group_section(STATUS), *_group_section(WHAT_RAN)]
    lines += ["## Attempts", "", "`attempts` lists every attempt at the run (the first `train`, each resume or "
              "extension), each with:", ""]
    lines += _table(list(ATTEMPT_KEYS), head="| key | what |")
    lines += ["", "A resume whose code changed since the last attempt is refused in one line listing the files; see",
              "[Resume, extend, fine-tune](../how-to/resume.md).", ""]
    lines += [*_group_section(VERSIONS), *_group_section(DISTRIBUTED)]
    return "\n".join(lines).rstrip("\n") + "\n" + _OUTRO
