"""What a server serves: model names, base paths and version policies.

Sources are an experiment folder (its `exported_models/`, named after its model)
or a TF Serving `models.config` text proto, parsed with the protos of
tensorflow-serving-api so any file TF Serving accepts reads the same here. An
experiment whose run.json cannot be read still serves: its model name is read
from the folder (`model_name_from_folder`), with one warning naming run.json.
"""

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.experiment import Experiment

_LOG = logging.getLogger(__name__)
_NOT_MODEL_SIGNATURES = ("serving_default", "__saved_model_init_op")


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """One served model.

    Args:
        name: the model name clients ask for.
        base_path: folder holding the numbered version folders.
        policy: 'latest', 'all' or 'specific'.
        num_versions: how many of the newest versions 'latest' serves.
        versions: the versions 'specific' serves.
        labels: version labels (e.g. {'stable': 3}).

    Example:

    ```python
    source = ModelSource("model_curve_fitting", Path("exp/exported_models"))
    source.wanted([1, 2, 3])   # [3]
    ```
    """

    name: str
    base_path: Path
    policy: str = "latest"
    num_versions: int = 1
    versions: tuple = ()
    labels: tuple = ()  # (label, version) pairs: hashable, unlike a dict

    def wanted(self, available):
        """The versions this policy serves among `available`."""
        available = sorted(available)
        if self.policy == "all":
            return available
        if self.policy == "specific":
            return [version for version in available if version in self.versions]
        return available[-self.num_versions:]

    def label_version(self, label):
        return dict(self.labels).get(label)


def is_path_trick(name):
    """True for names that could climb or split paths (empty, '/', '..'); requests and configs both refuse them."""
    return not name or "/" in name or ".." in name


def check_model_name(name, where):
    """Model names become URL segments and log lines: no path tricks, no spaces."""
    if is_path_trick(name) or any(character.isspace() for character in name):
        raise UserInputError(f"{where}: name: expected a model name without '/', '..' or spaces, got {name!r}")


def sources_from_config_file(path):
    """Parses a TF Serving `models.config` (text `ModelServerConfig`)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: model config file not found")
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except (text_format.ParseError, UnicodeDecodeError) as error:
        raise UserInputError(f"{path}: expected a ModelServerConfig text proto: {error}") from None
    if not config.model_config_list.config:
        raise UserInputError(f"{path}: model_config_list: expected at least one config {{ name base_path }}")
    sources = [_source_from_proto(model, path) for model in config.model_config_list.config]
    names = [source.name for source in sources]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise UserInputError(f"{path}: name: expected unique model names, got {duplicated} twice")
    return sources


def _source_from_proto(model, path):
    check_model_name(model.name, path)
    if model.model_platform not in ("", "tensorflow"):
        raise UserInputError(f"{path}: model_platform: expected 'tensorflow', got {model.model_platform!r}")
    base = Path(model.base_path)
    if not model.base_path:
        raise UserInputError(f"{path}: base_path: expected a folder for model {model.name!r}")
    if not base.is_absolute():
        base = path.parent / base
    policy = model.model_version_policy.WhichOneof("policy_choice") or "latest"
    num_versions = max(1, model.model_version_policy.latest.num_versions or 1)
    specific = tuple(model.model_version_policy.specific.versions)
    if policy == "specific" and not specific:
        raise UserInputError(f"{path}: model_version_policy.specific: expected at least one version for {model.name!r}")
    labels = tuple(sorted(model.version_labels.items()))
    return ModelSource(model.name, base, policy, num_versions, specific, labels)


def source_from_experiment(experiment_dir):
    """The model an experiment exports, with the version policy of its `models.config`.

    The base path is taken from the folder itself, not from the absolute path
    written in models.config, so a copied or moved experiment still serves. A
    damaged run.json (cut short by a full disk, edited by hand) is one warning:
    the model name is then read from the folder.
    """
    from experiments_manager.experiment import Experiment

    experiment = Experiment.open(experiment_dir)
    info, problem = read_run_info(experiment)
    name, origin = (info or {}).get("model_name"), experiment.run_file
    if not isinstance(name, str):
        problem = problem or f"model_name: expected a str, got {name!r}"
        name, origin = model_name_from_folder(experiment, problem)
        _LOG.warning("%s: %s; serving %s as model %r (the name from %s)", experiment.run_file, problem,
                     experiment.export_dir, name, origin)
    check_model_name(name, origin)
    if info is not None and not _saved_models_newest_first(experiment.export_dir):
        _say_nothing_served_yet(experiment, info)
    return served_as(experiment, name)


def served_as(experiment: "Experiment", name: str) -> ModelSource:
    """An experiment's `exported_models/` served as model `name`, with the version policy of its `models.config`
    (latest 1 without one); the base path is the folder's own, not the one written in models.config.

    Args:
        experiment: an `Experiment`.
        name: the model name.

    Raises:
        UserInputError: its models.config cannot be parsed (one line naming it).

    Example:

    ```python
    served_as(Experiment("lab/exp"), "lab.exp")   # ModelSource('lab.exp', Path('lab/exp/exported_models'), ...)
    ```
    """
    if experiment.models_config.is_file():
        written = sources_from_config_file(experiment.models_config)[0]
        return dataclasses.replace(written, name=name, base_path=experiment.export_dir)
    return ModelSource(name, experiment.export_dir)


def _say_nothing_served_yet(experiment, info):
    """An experiment with no version yet: served once one is written, while the run may still write one (said in
    one line, with its status); refused in one line when it ended without any."""
    status, done, total = info.get("status"), info.get("epochs_completed") or 0, info.get("nbEpoch") or "?"
    if status in ("finished", "failed"):
        why = f": {info['error']}" if status == "failed" and info.get("error") else ""
        raise UserInputError(f"{experiment.root}: exported_models: expected a version to serve, got none (status: "
                             f"{status}, {done} of {total} epochs done{why})")
    if status == "running":
        _LOG.info("%s has no exported version yet (status: running, epoch %s of %s); it will be served as soon as "
                  "one is written", experiment.root, done + 1, total)
    else:
        _LOG.info("%s has no exported version yet (status: %s, %s of %s epochs done); it will be served as soon as "
                  "one is written (resume it: experiments-manager train --resume %s)", experiment.root, status, done,
                  total, experiment.root)


def read_run_info(experiment) -> "tuple[dict | None, str]":
    """An experiment's run.json as a dict and "", or None and what is wrong with it; nothing is logged.

    Args:
        experiment: an `Experiment`.

    Example:

    ```python
    info, problem = read_run_info(Experiment.open("exp"))
    port = info.get("tensorflow_server_port") if info is not None else None
    ```
    """
    try:
        info = experiment.run_info()
    except UserInputError as error:
        return None, str(error).removeprefix(f"{experiment.run_file}: ")
    if not isinstance(info, dict):
        return None, f"expected a JSON object, got {type(info).__name__}"
    return info, ""


def model_name_from_folder(experiment, why: str = "unreadable") -> "tuple[str, Path]":
    """The model name an experiment serves under, read without run.json, and the file it was read from.

    Tried in order: the name in its `models.config`, the stem of the single model copy (`<model_name>.py`)
    beside `experiment_settings.py`, the one signature other than `serving_default` in its newest readable
    SavedModel (the exporter names it after the model).

    Args:
        experiment: an `Experiment`.
        why: what is wrong with run.json, for the error when nothing names the model.

    Raises:
        UserInputError: one line naming run.json, when nothing in the folder names the model.

    Example:

    ```python
    model_name_from_folder(Experiment.open("exp"))  # ('model_curve_fitting', Path('exp/models.config'))
    ```
    """
    from experiments_manager.experiment import SETTINGS_COPY_NAME

    if experiment.models_config.is_file():
        try:
            return sources_from_config_file(experiment.models_config)[0].name, experiment.models_config
        except UserInputError:
            pass  # damaged too: the next witness
    copies = [path for path in experiment.root.glob("*.py")
              if path.name != SETTINGS_COPY_NAME and not path.name.startswith(".")]
    if len(copies) == 1:
        return copies[0].stem, copies[0]
    for saved_model in _saved_models_newest_first(experiment.export_dir):
        names = _model_signatures(saved_model)
        if len(names) == 1:
            return names[0], saved_model
    raise UserInputError(f"{experiment.run_file}: {why}; and no models.config, single <model_name>.py copy or "
                         "exported signature in the folder names the model")


def _saved_models_newest_first(export_dir):
    try:
        folders = [path for path in Path(export_dir).iterdir() if path.name.isdigit()]
    except OSError:
        return []
    folders.sort(key=lambda path: int(path.name), reverse=True)
    return [path / "saved_model.pb" for path in folders if (path / "saved_model.pb").is_file()]


def _model_signatures(saved_model):
    """The signature names of a saved_model.pb other than serving_default (none when it cannot be parsed)."""
    from google.protobuf.message import DecodeError

    from experiments_manager.utils.native_noise import import_tensorflow_quietly

    import_tensorflow_quietly()  # its protos come with TensorFlow, whose start-up noise stays off the terminal
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(saved_model.read_bytes())
    except (OSError, DecodeError):
        return []
    return sorted({key for graph in proto.meta_graphs for key in graph.signature_def} - set(_NOT_MODEL_SIGNATURES))


def models_config_text(sources: "list[ModelSource]") -> str:
    """The TF Serving `models.config` text proto serving `sources` (absolute base paths).

    Args:
        sources: the `ModelSource`s (none: an empty list, which tensorflow_model_server accepts).

    Example:

    ```python
    print(models_config_text([ModelSource("exp", Path("exp/exported_models"))]))
    # model_config_list { config { name: "exp" base_path: "/abs/exp/exported_models" model_platform: "tensorflow" ... } }
    ```
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.SetInParent()  # no source: an empty list, which tensorflow_model_server accepts
    for source in sources:
        model = config.model_config_list.config.add()
        model.name = source.name
        model.base_path = str(Path(source.base_path).resolve())
        model.model_platform = "tensorflow"
        policy = model.model_version_policy
        if source.policy == "all":
            policy.all.SetInParent()
        elif source.policy == "specific":
            policy.specific.versions.extend(source.versions)
        else:
            policy.latest.num_versions = source.num_versions
        for label, version in source.labels:
            model.version_labels[label] = version
    return text_format.MessageToString(config)
