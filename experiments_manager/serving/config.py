"""What a server serves: model names, base paths and version policies.

Sources are an experiment folder (its `exported_models/`, named after its model)
or a TF Serving `models.config` text proto, parsed with the protos of
tensorflow-serving-api so any file TF Serving accepts reads the same here.
"""

import dataclasses
from pathlib import Path

from experiments_manager.utils.errors import UserInputError


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
    except text_format.ParseError as error:
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
    written in models.config, so a copied or moved experiment still serves.
    """
    from experiments_manager.experiment import Experiment

    experiment = Experiment.open(experiment_dir)
    name = experiment.run_info().get("model_name")
    check_model_name(name, experiment.run_file)
    policy = ModelSource(name, experiment.export_dir)
    if experiment.models_config.is_file():
        written = sources_from_config_file(experiment.models_config)[0]
        policy = dataclasses.replace(written, name=name, base_path=experiment.export_dir)
    return policy


def models_config_text(sources):
    """The TF Serving `models.config` text proto serving `sources` (absolute base paths)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
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
