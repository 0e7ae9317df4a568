"""The settings as typed sections: one dataclass per concern, built once from the user's settings module.

A settings file names things as the original framework did (`nbEpoch`, `useXLA`, `get_learningRate`,
`consume_data_from_kafka`, ...). This module is the one place that maps those names to the engine's: each field
says which module-level name it is read from (`name=`, when it differs), its default, the check its value must
pass and what it means. The settings loader (`loader.py`) checks a module against these fields, and the
settings reference (docs/reference/settings.md) is generated from them (`reference_markdown`, checked by
`tests/unit/settings/test_sections.py`).

A field without a default is required. A default of None with a check means "not set" is accepted.

Long because every setting a file may set is defined here, once, with its documentation: the sections are one table.

Example:

```python
settings = load_settings("examples/regression/mysettings_curve_fitting.py")
settings.training.epochs          # the module's nbEpoch
settings.kafka.enabled            # its consume_data_from_kafka (False when not set)
sections.user_name("training", "epochs")  # 'nbEpoch'
```
"""

import dataclasses
import enum
import types
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence, Union, cast

import experiments_manager.settings.contract as c

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class _Required(enum.Enum):
    REQUIRED = "required"


REQUIRED = _Required.REQUIRED


def setting(doc: str, default: Any = REQUIRED, check: Optional[c.Check] = None, name: Optional[str] = None) -> Any:
    """A field of a section.

    Args:
        doc: what it means, as the settings reference (docs/reference/settings.md) shows it.
        default: its value when the module does not set it (`REQUIRED`: the module must set it).
        check: function value -> None, or the message saying what was expected (see `contract.py`).
        name: the module-level name it is read from, when not the field's own name.
    """
    metadata = {"doc": doc, "check": check, "name": name}
    if default is REQUIRED:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


if TYPE_CHECKING:  # what `section` is, said so that mypy sees the sections as the dataclasses they are
    from typing import TypeVar, dataclass_transform

    _Section = TypeVar("_Section")

    @dataclass_transform(frozen_default=True, kw_only_default=True)
    def section(cls: type[_Section]) -> type[_Section]: ...
else:
    section = dataclasses.dataclass(frozen=True, kw_only=True)


@section
class ExperimentSection:
    """Where runs go and what they are called."""

    working_folder: str = setting("folder holding the experiment folders", check=c.of_type(str),
                                  name="workingFolder")
    session_name: str = setting("first part of every experiment folder's name", check=c.of_type(str))
    model_file: str = setting("file defining `model(usersettings)` that returns a `keras.Model`; resolved against "
                              "the current directory, then the settings file's folder (a path with folders in it: "
                              "also the folders above)",
                              check=c.of_type(str))
    hparams: dict[str, Any] = setting("the run's hyperparameters (overridable with `--hparam`; shown in TensorBoard)",
                                      default={}, check=c.of_type(dict))
    checkpoints_folder: Optional[str] = setting(
        "a folder elsewhere for the runs' checkpoints (scratch storage: large and fast, not backed up): a new run's "
        "checkpoints go to `<checkpoints_folder>/<the run folder's name>/`, which `RUN/checkpoints` links to, and "
        "run.json records that place (`checkpoints_link`: the one link a run's folder may hold); None: inside "
        "the run's folder", default=None, check=c.of_type(str))


@section
class RuntimeSection:
    """Devices, precision, compilation and seeds."""

    random_seed: Optional[int] = setting("seed of Python, NumPy and TensorFlow (None: drawn, and recorded in run.json)",
                                         default=None, check=c.optional_int)
    xla: bool = setting("compile the train step with XLA", default=False, check=c.of_type(bool), name="useXLA")
    mixed_precision: bool = setting("Keras' `mixed_float16` policy", default=False, check=c.of_type(bool),
                                    name="enable_mixed_precision")
    gpu_ids: Sequence[int] = setting("GPUs to use ([]: all)", default=[], check=c.list_of_ints, name="used_gpu_IDs")
    distribution_strategy: str = setting("`tf.distribute` strategy used with more than one device",
                                         default="MirroredStrategy", check=c.of_type(str))
    worker_heartbeat_timeout: int = setting(
        "multi-worker training: seconds a worker's (or the chief's) heartbeats may stop before every other worker "
        "stops with exit code 75, naming it (TensorFlow's coordination service; a job template then requeues the "
        "job); a worker ends within about this plus 3 s of its node hanging", default=10, check=c.positive_int,
        name="worker_heartbeat_timeout_seconds")
    deterministic: bool = setting("bitwise-reproducible training: TensorFlow's op determinism, and each epoch's random "
                                  "state and data order set from (seed, epoch), so a run killed anywhere and resumed "
                                  "ends with the weights of an uninterrupted one (slower on some ops)",
                                  default=False, check=c.of_type(bool))


@section
class TrainingSection:
    """The training recipe: epochs, loss, optimizer, metrics, EMA, stopping."""

    batch_size: int = setting("batch size given to `get_input_pipeline`", check=c.positive_int)
    epochs: int = setting("epochs to train", check=c.positive_int, name="nbEpoch")
    get_learning_rate: Callable[..., Any] = setting(
        "`get_learningRate()`: a number or a Keras schedule", check=c.function(),
        name="get_learningRate")
    get_optimizer: Callable[..., Any] = setting("`get_optimizer(model, loss, learning_rate)`: a Keras optimizer",
                                                check=c.function("model", "loss", "learning_rate"))
    get_total_loss: Callable[..., Any] = setting("`get_total_loss(model)`: a Keras loss", check=c.function("model"))
    get_metrics: Callable[..., Any] = setting("`get_metrics(model, loss)`: a list of Keras metrics",
                                              check=c.function("model", "loss"))
    loss_weights: Optional[Union[Sequence[float], dict[str, float]]] = setting(
        "a model with several outputs: the weight of each output's loss in the loss trained and monitored "
        "(`loss`, `val_loss` are the weighted sum), as Keras' `compile(loss_weights=...)`: a dict by output name or "
        "a list in the model's output order (None: each 1)", default=None, check=c.loss_weights)
    ema: bool = setting("train with averaged (EMA) weights: validation, best value, early stopping and exports use "
                        "them", default=True, check=c.of_type(bool), name="weights_moving_averages")
    ema_momentum: float = setting("EMA decay, reached after the warm-up", default=0.99, check=c.unit_interval)
    ema_warmup: bool = setting("decay `min(ema_momentum, (1 + n) / (40 + n))` after n steps (False: Keras' fixed "
                               "momentum)", default=True, check=c.of_type(bool))
    validate_raw_weights: bool = setting("also validate the raw weights (`val_*_raw`)", default=True,
                                         check=c.of_type(bool))
    raw_validation_freq: int = setting(
        "validate the raw weights at epochs 1, 1 + N, 1 + 2N, ... and the last (1: every epoch, the default "
        "before 2026-11-26; with a monitored `val_*_raw` value: every epoch); the EMA weights: every epoch",
        default=10, check=c.positive_int)
    early_stopping_patience: int = setting("epochs without improvement before stopping (LR-on-plateau: half)",
                                           default=10, check=c.non_negative_int)
    monitor: str = setting("the value that decides the best epoch, early stopping and exports", default="val_loss",
                           check=c.of_type(str), name="monitored_loss_name")
    monitor_mode: str = setting("'auto' (as Keras decides), 'min' or 'max'", default="auto",
                                check=c.one_of("auto", "min", "max"), name="monitored_loss_mode")
    addon_callbacks: Optional[Callable[..., Any]] = setting(
        "`addon_callbacks(model, train_data, val_data)`: a dict or list of Keras "
        "callbacks", default=None,
        check=c.function("model", "train_samples", "val_samples"))


@section
class DataSection:
    """The input pipelines."""

    get_input_pipeline: Callable[..., Any] = setting(
        "`get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch)`: a `tf.data.Dataset` of "
        "`(x, y)` batches (or a Keras 2 Sequence, iterator or generator)",
        check=c.function("raw_data_files_folder", "isTraining", "batch_size", "nbEpoch"))
    train_dir: object = setting("`raw_data_files_folder` of the training pipeline (a relative path not found from "
                                "the current folder is looked for from the run's folder, where the original "
                                "framework ran)", default="", name="raw_data_dir_train")
    val_dir: object = setting("`raw_data_files_folder` of the validation pipeline (found as `raw_data_dir_train` is)",
                              default="", name="raw_data_dir_val")
    train_samples: Optional[int] = setting(
        "samples per training epoch, needed when the dataset is infinite or of unknown "
        "length (an epoch is `nb_train_samples // batch_size` batches)", default=None,
        check=c.optional_int, name="nb_train_samples")
    val_samples: Optional[int] = setting("the same for validation", default=None, check=c.optional_int,
                                         name="nb_val_samples")
    test_dir: object = setting("`raw_data_files_folder` of the test pipeline that `evaluate` reads whole "
                               "(`get_input_pipeline(raw_data_dir_test, isTraining=False, ...)`; None: no test set, "
                               "give one with `evaluate --data FOLDER`)", default=None, name="raw_data_dir_test")
    class_names: Optional[Sequence[str]] = setting(
        "a classifier's class names, by class id (`evaluate`'s confusion matrix and "
        "per-class table, and each exported version's labels, served in its metadata; "
        "None: the ids)", default=None, check=c.list_of_strings)


@section
class MonitoringSection:
    """What TensorBoard shows beyond the epoch scalars."""

    histogram_freq: int = setting("weight histograms at epochs 1, 1 + N, 1 + 2N, ... and the last (0: none; the "
                                  "default was 1 before 2026-11-26)", default=5, check=c.non_negative_int)
    profile: bool = setting("profile a few steps of the first epoch (TensorBoard's Profile tab)", default=False,
                            check=c.of_type(bool), name="use_profiling")
    custom_tensorboard_logs: Optional[Callable[..., Any]] = setting(
        "`custom_tensorboard_logs(model, epoch, logs)`: extra summaries in the `custom` run (`epoch` is Keras' own, "
        "from 0)", default=None)


@section
class ExportSection:
    """The versioned SavedModels written while training."""

    get_served_module: Optional[Callable[..., Any]] = setting(
        "`get_served_module(model, model_name)`: a `tf.Module` whose `served_model` "
        "is a `tf.function` with an `input_signature` (None: the model's call)",
        default=None, check=c.function("model", "model_name"))
    only_on_improvement: bool = setting("export when the monitored value improves (False: every epoch)",
                                        default=True, check=c.of_type(bool), name="save_only_last_best_model")
    versions_to_keep: int = setting(
        "newest exported versions kept (and the one holding the best epoch)", default=5, check=c.positive_int,
        name="export_versions_to_keep")


@section
class ServingSection:
    """The streaming client and the server it talks to."""

    client_io: Optional[type[Any]] = setting(
        "class `Client_IO(clientInitSpecs, debugMode)` with `getInputData(idx)`, "
        "`decodeResponse(result)` and `finalize()`: the input and output of `predict`",
        default=None, check=c.client_io_class, name="Client_IO")
    address: str = setting("the server's host for the client", default="127.0.0.1", check=c.of_type(str),
                           name="tensorflow_server_address")
    port: int = setting("gRPC port (the server's default too)", default=c.DEFAULT_GRPC_PORT, check=c.port,
                        name="tensorflow_server_port")
    client_timeout_secs: float = setting("the client's deadline per request", default=10,
                                         check=c.of_type(int, float, name="a number of seconds"),
                                         name="serving_client_timeout_int_secs")
    grpc_max_message_length: int = setting("largest gRPC message the client sends or receives",
                                           default=512 * c.MIB, check=c.positive_int)


@section
class KafkaSection:
    """Training from Kafka topics."""

    enabled: bool = setting("read `<session_name>_train` / `_val` from Kafka", default=False, check=c.of_type(bool),
                            name="consume_data_from_kafka")
    bootstrap_servers: Union[str, Sequence[str]] = setting(
        "brokers", default=["localhost:9092"],
        check=c.of_type(list, tuple, str, name="a list of host:port"),
        name="kafka_bootstrap_servers")
    config: dict[str, Any] = setting(
        "extra client configuration", default={}, check=c.of_type(dict), name="kafka_config")
    connect_timeout_secs: float = setting("how long the brokers may take to answer at start", default=10,
                                          check=c.positive_number, name="kafka_connect_timeout_secs")
    stall_timeout_secs: float = setting("how long data may stop arriving before the run stops (exit 75)",
                                        default=120, check=c.positive_number, name="kafka_stall_timeout_secs")
    shuffle_buffer_size: int = setting("shuffle buffer of the training stream (0: none)", default=1000,
                                       check=c.non_negative_int, name="kafka_shuffle_buffer_size")


@section
class FederatedSection:
    """Federated training with Flower."""

    enabled: bool = setting("train federated (`train -u` simulates the federation)", default=False,
                            check=c.of_type(bool), name="enable_federated_learning")
    round_timeout_secs: float = setting("longest wait for a round's clients", default=600, check=c.positive_number,
                                        name="federated_round_timeout_secs")
    client_validation: bool = setting(
        "each client validates on its validation pipeline after every local epoch (its history.csv's `val_` "
        "columns); False: clients only train, as a bare Flower ClientApp (the server evaluates the global model "
        "either way)", default=True, check=c.of_type(bool), name="federated_client_validation")
    get_client_partition: Optional[Callable[..., Any]] = setting(
        "`get_client_partition(dataset, client_id, num_clients, isTraining)`: a "
        "client's share of the data", default=None,
        check=c.function("dataset", "client_id", "num_clients", "isTraining"))


@section
class SweepSection:
    """Hyperparameter sweeps."""

    space: Optional[dict[str, Any]] = setting(
        "`hyperopt_space`: dict of hparam name (a key of `hparams`) -> hyperopt expression object, "
        "e.g. `{'learningRate': hp.loguniform('learningRate', -7, -2)}`", default=None,
        check=c.dict_or_none, name="hyperopt_space")
    scheduler: Optional[str] = setting(
        "`sweep`'s early stopping of bad trials: 'asha' (asynchronous successive halving), "
        "'hyperband', or 'none' (every trial trains `nbEpoch`); `sweep --scheduler` wins",
        default=None, check=c.one_of(None, "none", "asha", "hyperband"),
        name="sweep_scheduler")
    eta: Optional[int] = setting("the scheduler's reduction factor: the top 1/eta of a rung continue, to eta times the "
                                 "epochs (None: 3); `sweep --eta` wins", default=None, check=c.optional_int,
                                 name="sweep_eta")
    min_epochs: Optional[int] = setting("the scheduler's first rung, in epochs (None: 1); `sweep --min-epochs` wins",
                                        default=None, check=c.optional_int, name="sweep_min_epochs")


@section
class TrackingSection:
    """Runs logged to an MLflow tracking server (`train --mlflow` wins)."""

    mlflow_tracking_uri: Optional[str] = setting(
        "log every run to this MLflow tracking server (http://HOST:PORT; '': MLFLOW_TRACKING_URI; None: not "
        "logged unless `--mlflow`)", default=None, check=c.of_type(str, type(None), name="a URI or None"))
    mlflow_experiment: Optional[str] = setting(
        "the MLflow experiment runs go to (None: the settings' `session_name`)", default=None,
        check=c.of_type(str, type(None), name="a name or None"), name="mlflow_experiment_name")
    mlflow_registered_model: Optional[str] = setting(
        "the registered model each version that improves on the run's earlier ones joins; its alias `champion` "
        "names the best (None: the served model's name, `model_name`)", default=None,
        check=c.registered_model_name, name="mlflow_registered_model_name")


SECTIONS: "dict[str, type[DataclassInstance]]" = {
    "experiment": ExperimentSection,
    "runtime": RuntimeSection,
    "training": TrainingSection,
    "data": DataSection,
    "monitoring": MonitoringSection,
    "export": ExportSection,
    "serving": ServingSection,
    "kafka": KafkaSection,
    "federated": FederatedSection,
    "sweep": SweepSection,
    "tracking": TrackingSection,
}


def fields() -> Iterator[tuple[str, dataclasses.Field[Any], str]]:
    """Every setting: (section name, dataclass field, the module-level name), in the reference's order."""
    for section_name, cls in SECTIONS.items():
        for field in dataclasses.fields(cls):
            yield section_name, field, field.metadata["name"] or field.name


NAMES = frozenset(name for _, _, name in fields())  # every module-level name a settings file may set


def user_name(section_name: str, field_name: str) -> str:
    """The module-level name a field is read from, e.g. `user_name('training', 'epochs')` -> 'nbEpoch'."""
    field = {f.name: f for f in dataclasses.fields(SECTIONS[section_name])}[field_name]
    return field.metadata["name"] or field.name


def is_required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def default_of(field: dataclasses.Field[Any]) -> Any:
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def build(module: types.ModuleType) -> dict[str, Any]:
    """The sections of a checked settings module: {section name: its dataclass}, defaults for unset names."""
    values: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for section_name, field, name in fields():
        if hasattr(module, name):
            values[section_name][field.name] = getattr(module, name)
    return {name: SECTIONS[name](**values[name]) for name in SECTIONS}


def problems_of(module: types.ModuleType, file_name: str) -> list[str]:
    """One line per missing required name or value failing its check."""
    problems: list[str] = []
    for _, field, name in fields():
        if not hasattr(module, name):
            if is_required(field):
                problems.append(f"{file_name}: {name}: missing (required by the settings contract)")
            continue
        check, value = field.metadata["check"], getattr(module, name)
        if check is None or (value is None and not is_required(field) and default_of(field) is None):
            continue
        message = check(value)
        if message:
            problems.append(f"{file_name}: {name}: {message}")
    return problems


def reference_markdown() -> str:
    """The settings reference (docs/reference/settings.md): one table per section, names as a settings file
    writes them."""
    parts: list[str] = []
    for section_name, cls in SECTIONS.items():
        rows = [f"**`{section_name}`**: {cast(str, cls.__doc__).strip()}", "", "| name | default | what |",
                "|---|---|---|"]
        for field in dataclasses.fields(cls):
            name = field.metadata["name"] or field.name
            default = "required" if is_required(field) else f"`{default_of(field)!r}`"
            rows.append(f"| `{name}` | {default} | {field.metadata['doc'].replace('|', '&#124;')} |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts) + "\n"
