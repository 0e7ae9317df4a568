"""The served-model layout: what an exporter writes and a model server reads, and the names both sides agree on.

A run's `exported_models/` holds one folder per version, named by its number (`exported_models/3/saved_model.pb`,
as TF Serving reads it). A version being written is a dot-prefixed folder carrying its writer's pid (`.tmp-3-<pid>`),
renamed to its number once complete; a version found damaged at a resume, or exported after the checkpoint a resume
continues from, is moved aside (`damaged-3`, `discarded-3`). Neither is a version: no server loads it, and the
exporter never uses its number again. The run's `models.config` (a TF Serving `ModelServerConfig` text proto) names
the model and its version policy. A model's name is its model file's name without `.py`: the settings loader checks
it, by the same rule a server applies to every name it serves. The default ports are TF Serving's.

This module is the one place these rules live: the exporter (`export/`) and the servers (`serving/`) both import
it, and neither imports the other. It imports the standard library and `utils/` only; building and parsing a
models.config import tensorflow-serving-api's protobuf classes inside those functions (never TensorFlow).

Example:

```python
version_of("3")                         # 3
version_of(".tmp-3-1234")               # None: a version being written
in_progress_folder_name(3, pid=1234)    # '.tmp-3-1234'
model_name_problem("my model")          # "expected a model name without '/', '..' or spaces, got 'my model'"
text = models_config_text([ModelSource("model_curve_fitting", Path("exp/exported_models"))])
```
"""

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Optional

from experiments_manager.utils.errors import UserInputError

DEFAULT_GRPC_PORT = 8500  # TF Serving's ports
DEFAULT_REST_PORT = 8501
DAMAGED, DISCARDED = "damaged", "discarded"  # why a version was moved aside (see `set_aside_folder_name`)

_VERSION_NAME = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() takes '²' and '٣', \d takes '٣'
_SET_ASIDE_NAME = re.compile(rf"(?:{DAMAGED}|{DISCARDED})-(?P<version>[0-9]+)(?:-[0-9]+)?")


def version_of(name: str) -> Optional[int]:
    """The version a folder named `name` holds, or None when it is not a version's folder.

    A version's folder is named by its number in ASCII digits ('0' and '007' included: the exporter numbers from 1,
    a server serves what it finds). Nothing else is a version: not one being written (`.tmp-3-<pid>`) or removed
    (`.deleting-3-<pid>`), not one moved aside (`damaged-3`).

    Args:
        name: a folder's name (not a path).

    Returns:
        the version number, or None.

    Example:

    ```python
    version_of("12")        # 12
    version_of("damaged-3") # None
    ```
    """
    return int(name) if _VERSION_NAME.fullmatch(name) else None


def present_versions(export_dir: "str | os.PathLike[str]") -> "list[int]":
    """The version numbers present in `export_dir` (a run's `exported_models/`), oldest first: every entry named like
    a version counts (a file too: its number is taken).

    Args:
        export_dir: the folder holding the versions.

    Returns:
        the sorted numbers; [] when none, or when the folder does not exist.

    Example:

    ```python
    present_versions("exp/exported_models")   # [2, 3]
    ```
    """
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        return []
    return sorted(version for version in map(version_of, os.listdir(export_dir)) if version is not None)


def in_progress_folder_name(version: int, pid: Optional[int] = None) -> str:
    """The name of the folder version `version` is written into before it is renamed to its number.

    Dot-prefixed, so that no server lists it; with the writer's pid, so that `utils.atomic.remove_leftovers`
    tells what a killed writer left from what a live one is writing.

    Args:
        version: the version's number.
        pid: the writer's process id (default None: this process').

    Returns:
        `.tmp-<version>-<pid>`.

    Example:

    ```python
    in_progress_folder_name(3, pid=1234)   # '.tmp-3-1234'
    ```
    """
    return f".tmp-{int(version)}-{os.getpid() if pid is None else int(pid)}"


def set_aside_folder_name(reason: str, version: int) -> str:
    """The name a version's folder is moved aside to (`utils.checksums.set_aside` adds `-1`, `-2`... when taken).

    Args:
        reason: `DAMAGED` (its files differ from its checksums) or `DISCARDED` (exported after the checkpoint a
            resume continues from).
        version: the version's number.

    Returns:
        `damaged-<version>` or `discarded-<version>`.

    Raises:
        ValueError: `reason` is neither.

    Example:

    ```python
    set_aside_folder_name(DAMAGED, 3)   # 'damaged-3'
    ```
    """
    if reason not in (DAMAGED, DISCARDED):
        raise ValueError(f"reason: expected {DAMAGED!r} or {DISCARDED!r}, got {reason!r}")
    return f"{reason}-{int(version)}"


def set_aside_version(name: str) -> Optional[int]:
    """The version a moved-aside folder held (its number is never used again), or None for any other name.

    Args:
        name: a folder's name.

    Returns:
        3 for 'damaged-3', 'discarded-3' or 'damaged-3-1'; None otherwise.

    Example:

    ```python
    set_aside_version("discarded-4-1")   # 4
    ```
    """
    found = _SET_ASIDE_NAME.fullmatch(name)
    return int(found.group("version")) if found else None


def is_path_trick(name: str) -> bool:
    """Whether a model name could climb or split paths: requests and configs both refuse them.

    Args:
        name: a model name.

    Returns:
        True for '', or a name holding '/' or '..'.

    Example:

    ```python
    is_path_trick("../etc")   # True
    ```
    """
    return not name or "/" in name or ".." in name


def model_name_problem(name: str) -> Optional[str]:
    """What is wrong with a model name, or None: the one rule every served model name meets.

    Model names become URL segments, signature names and log lines: no path tricks (see `is_path_trick`), no
    spaces (any whitespace).

    Args:
        name: a model name.

    Returns:
        None for a good name, else `expected ..., got '<name>'`.

    Example:

    ```python
    model_name_problem("model_curve_fitting")   # None
    model_name_problem("my model")              # "expected a model name without '/', '..' or spaces, got 'my model'"
    ```
    """
    if is_path_trick(name) or any(character.isspace() for character in name):
        return f"expected a model name without '/', '..' or spaces, got {name!r}"
    return None


def check_model_name(name: str, where: "str | os.PathLike[str]") -> None:
    """Raises when `name` breaks the model-name rule (see `model_name_problem`).

    Args:
        name: a model name.
        where: what named it, for the message (a file, a folder).

    Raises:
        UserInputError: `<where>: name: expected a model name without '/', '..' or spaces, got '<name>'`.

    Example:

    ```python
    check_model_name("lab exp", "models.config")   # UserInputError: models.config: name: expected a model name ...
    ```
    """
    problem = model_name_problem(name)
    if problem is not None:
        raise UserInputError(f"{where}: name: {problem}")


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """One served model: a `config` of a models.config.

    Args:
        name: the model name clients ask for.
        base_path: folder holding the numbered version folders.
        policy: 'latest', 'all' or 'specific'.
        num_versions: how many of the newest versions 'latest' serves.
        versions: the versions 'specific' serves.
        labels: version labels as (label, version) pairs (e.g. `(("stable", 3),)`).

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
    versions: tuple[int, ...] = ()
    labels: tuple[tuple[str, int], ...] = ()  # (label, version) pairs: hashable, unlike a dict

    def wanted(self, available: "list[int] | set[int]") -> "list[int]":
        """The versions this policy serves among `available`, oldest first."""
        available = sorted(available)
        if self.policy == "all":
            return available
        if self.policy == "specific":
            return [version for version in available if version in self.versions]
        return available[-self.num_versions:]

    def label_version(self, label: str) -> Optional[int]:
        """The version `label` names, or None."""
        return dict(self.labels).get(label)


def models_config_text(sources: "list[ModelSource]") -> str:
    """The TF Serving `models.config` text proto serving `sources` (absolute base paths).

    Args:
        sources: the `ModelSource`s (none: an empty list, which tensorflow_model_server accepts).

    Returns:
        the text of a `ModelServerConfig`.

    Example:

    ```python
    print(models_config_text([ModelSource("exp", Path("exp/exported_models"))]))
    # model_config_list { config { name: "exp" base_path: "/abs/exp/exported_models" model_platform: "tensorflow" ...
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
    return str(text_format.MessageToString(config))


def sources_from_config_file(path: "str | os.PathLike[str]") -> "list[ModelSource]":
    """The models a TF Serving `models.config` (text `ModelServerConfig`, read with TF Serving's own proto) serves.

    Args:
        path: the models.config file (a relative base path in it is taken from the file's folder).

    Returns:
        one `ModelSource` per `config`, in the file's order.

    Raises:
        UserInputError: one line naming the file: not found, not a ModelServerConfig, no config, a repeated or bad
            name, a platform other than tensorflow, no base path, a 'specific' policy without versions.

    Example:

    ```python
    sources_from_config_file("exp/models.config")   # [ModelSource('model_curve_fitting', ...)]
    ```
    """
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


def _source_from_proto(model: Any, path: Path) -> ModelSource:
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
