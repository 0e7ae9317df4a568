"""A version of a registered MLflow model, named the way MLflow names it (`models:/NAME@ALIAS`, `models:/NAME/N`):
what `serve --model`, `evaluate` and `export` take instead of a run folder.

`resolve` asks the registry which version the alias (or number) names and reads the tags our runs put on it (the
run folder and the exported version, `models.py`). `run_version` gives that run folder and version where the folder
is mounted (evaluate, export: they need the run's settings and data). `downloaded` copies the version's SavedModel
from the server into a local folder in TF Serving's layout (`<cache>/<logged model id>/<N>/`, N the registry's version
number, a checked copy reused), and `served_config` writes the models.config that serves it, the alias as its version
label. Imports MLflow only in the functions that ask the server.

Example:

```python
version = resolve("models:/model_curve_fitting@champion", "http://127.0.0.1:5000")
folder, export_version = run_version(version)        # the run's folder and its exported version
config = served_config(version, cache_folder())       # serve --model_config_file config
```
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path
from typing import Optional

from experiments_manager.run.served_layout import ModelSource, models_config_text
from experiments_manager.tracking.models import FOLDER_TAG, VERSION_TAG
from experiments_manager.tracking.sender import one_line
from experiments_manager.tracking.sync import SyncFailed
from experiments_manager.utils.atomic import folder_replaced_atomically, write_text_atomically
from experiments_manager.utils.checksums import verify_manifest
from experiments_manager.utils.errors import UserInputError

MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<number>[0-9]+))")
LOGGED_MODEL_SOURCE = re.compile(r"models:/(?P<id>m-[0-9A-Za-z]{1,64})")  # MLflow 3's ids: m- and 32 hex digits
MAX_VERSION = 2**31 - 1  # MLflow's registry numbers versions with 32-bit integers


def is_model_uri(text: str) -> bool:
    """True for a registry URI (`models:/...`), which the command then resolves instead of a folder."""
    return text.startswith("models:/")


@dataclasses.dataclass(frozen=True)
class RegisteredVersion:
    """One version of a registered model.

    Args:
        uri: the models: URI it was named by.
        tracking_uri: the server that holds it.
        name: the registered model.
        number: its version number in the registry.
        alias: the alias it was named by (None: by number).
        source: where its files are (`models:/<logged model id>` for ours).
        tags: its tags (ours: the run folder, `export_version`, `epoch`, the monitor and value).
    """

    uri: str
    tracking_uri: str
    name: str
    number: int
    alias: Optional[str]
    source: str
    tags: dict[str, str]


def resolve(uri: str, tracking_uri: str, where: str = "--model") -> RegisteredVersion:
    """The registered version `uri` names at the server `tracking_uri`.

    Raises:
        UserInputError: `uri` is not `models:/NAME@ALIAS` or `models:/NAME/N`, or names nothing there (exit 2).
        SyncFailed: the server does not answer (exit 75: try again later).
    """
    matched = MODEL_URI.fullmatch(uri)
    if matched is None:  # said before MLflow is imported
        raise UserInputError(f"{where}: expected models:/NAME@ALIAS or models:/NAME/VERSION, got {uri!r}")
    number = matched["number"]
    if number is not None and (len(number) > len(str(MAX_VERSION)) or not 1 <= int(number) <= MAX_VERSION):
        raise UserInputError(f"{where}: {uri} names no model version: the registry numbers them from 1 to "
                             f"{MAX_VERSION}")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from experiments_manager.tracking.sender import client_settings

    client_settings()
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name, alias, number = matched["name"], matched["alias"], matched["number"]
    try:
        found = (client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, number))
    except MlflowException as error:
        if error.error_code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE"):  # also no answer: requests' error
            raise SyncFailed(f"{where}: the MLflow server at {tracking_uri} did not answer ({one_line(error)}); try "
                             "again once it does") from error
        if error.error_code == "ENDPOINT_NOT_FOUND":
            raise UserInputError(f"{where}: {tracking_uri} does not serve MLflow's API (it answered 404): give the "
                                 f"server's root URI, without a path ({one_line(error)})") from error
        raise UserInputError(
            f"{where}: {uri} names no model version at {tracking_uri}: {one_line(error)}") from error
    except OSError as error:
        raise SyncFailed(f"{where}: the MLflow server at {tracking_uri} does not answer ({type(error).__name__}); "
                         "try again once it does") from error
    return RegisteredVersion(uri, tracking_uri, name, int(found.version), alias, str(found.source or ""),
                             dict(found.tags or {}))


def run_version(version: RegisteredVersion, where: str = "RUN") -> tuple[Path, int]:
    """The run folder and exported version that `version` was registered from.

    Raises:
        UserInputError: it was not registered by a run of ours, or its folder is not on this machine.
    """
    folder, exported = version.tags.get(FOLDER_TAG), version.tags.get(VERSION_TAG, "")
    if not folder or not exported.isdigit():
        raise UserInputError(f"{where}: {version.uri} (version {version.number}) was not registered by a run of "
                             f"experiments_manager: expected the tags {FOLDER_TAG} and {VERSION_TAG} (a number), got "
                             f"{dict((key, version.tags.get(key)) for key in (FOLDER_TAG, VERSION_TAG))}")
    if not (Path(folder) / "run.json").is_file():
        raise UserInputError(f"{where}: {version.uri} is version {exported} of the run {folder}, which is not on "
                             "this machine (serve --model downloads the model itself)")
    return Path(folder), int(exported)


def cache_folder() -> Path:
    """Where `serve --model` keeps downloaded versions: $XDG_CACHE_HOME/experiments_manager/mlflow-models (default
    ~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "experiments_manager" / "mlflow-models"


def downloaded(version: RegisteredVersion, cache: Path) -> Path:
    """The version's SavedModel in `cache/<logged model id>/<N>/` (the id: what the registry's version holds, unique
    across servers and re-created models): a copy there whose checksums hold is used as it is, else the files are
    downloaded (into a dot-prefixed folder, renamed once whole)."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    base = cache / logged_model_id(version)
    final = base / str(version.number)
    if (final / "saved_model.pb").is_file() and verify_manifest(final) is None:
        return final
    client = MlflowClient(tracking_uri=version.tracking_uri, registry_uri=version.tracking_uri)
    scratch = base / f".download-{version.number}-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        location = client.get_logged_model(logged_model_id(version)).artifact_location
        if ".." in re.split(r"[/\\]", location):
            raise UserInputError(f"--model: {version.uri}'s logged model names its files at {location!r}: a path that "
                                 "climbs ('..') is refused")
        files = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(scratch),
                                                         tracking_uri=version.tracking_uri))
        if not (files / "saved_model.pb").is_file():
            raise UserInputError(f"--model: {version.uri} holds no SavedModel (no saved_model.pb in {location})")
        with folder_replaced_atomically(base / f".tmp-{version.number}-{os.getpid()}", final,
                                        replace_existing=True) as tmp:
            files.rename(tmp)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":  # the logged model was deleted: no use trying again
            raise UserInputError(f"--model: {version.uri}'s files are gone from {version.tracking_uri}: "
                                 f"{one_line(error)}") from error
        raise SyncFailed(f"--model: {version.uri}'s files could not be downloaded from {version.tracking_uri}: "
                         f"{one_line(error)}") from error
    except OSError as error:
        raise SyncFailed(f"--model: {version.uri}'s files could not be downloaded from {version.tracking_uri}: "
                         f"{one_line(error)}") from error
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def logged_model_id(version: RegisteredVersion) -> str:
    """The id of the logged model whose files `version` holds (its `source`: `models:/m-<id>`), which names its
    folder in the cache: nothing from the registry is a path. UserInputError for any other source (a run's
    artifact path, another scheme, `..`: a registry another tool or an older server filled)."""
    matched = LOGGED_MODEL_SOURCE.fullmatch(version.source)
    if matched is None:
        raise UserInputError(f"--model: {version.uri} holds {version.source[:200]!r}, not a logged model's files "
                             "(expected models:/m-<id>)")
    return matched["id"]


def served_config(version: RegisteredVersion, cache: Path) -> Path:
    """A models.config serving the downloaded `version` as model NAME, version N, its alias as a version label."""
    folder = downloaded(version, cache)
    labels = ((version.alias, version.number),) if version.alias else ()
    source = ModelSource(version.name, folder.parent.resolve(), policy="specific", versions=(version.number,),
                         labels=labels)
    config = folder.parent / "models.config"
    write_text_atomically(config, models_config_text([source]))
    return config


