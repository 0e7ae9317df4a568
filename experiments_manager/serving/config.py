"""What a server serves: model names, base paths and version policies.

Sources are an experiment folder (its `exported_models/`, named after its model)
or a TF Serving `models.config` text proto, parsed with the protos of
tensorflow-serving-api so any file TF Serving accepts reads the same here. An
experiment whose run.json cannot be read still serves: its model name is read
from the folder (`model_name_from_folder`), with one warning naming run.json.
`ModelSource`, the models.config parser and the model-name rule live in
`served_layout.py`, which the exporter reads too; they are re-exported here.
"""

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from experiments_manager.run.record import Status
from experiments_manager.run.served_layout import ModelSource, check_model_name, sources_from_config_file, version_of
from experiments_manager.utils.command_name import command_name
from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    import os

    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.record import RunRecord

_LOG = logging.getLogger(__name__)
_NOT_MODEL_SIGNATURES = ("serving_default", "__saved_model_init_op")


def source_from_experiment(experiment_dir: "str | os.PathLike[str]") -> ModelSource:
    """The model an experiment exports, with the version policy of its `models.config`.

    The base path is taken from the folder itself, not from the absolute path
    written in models.config, so a copied or moved experiment still serves. A
    damaged run.json (cut short by a full disk, edited by hand) is one warning:
    the model name is then read from the folder.
    """
    from experiments_manager.run.experiment import Experiment

    experiment = Experiment.open(experiment_dir, record=False)  # a damaged run.json is said, not fatal
    info, problem = read_run_info(experiment)
    name, origin = (info or {}).get("model_name"), experiment.run_file
    if not isinstance(name, str):
        problem = problem or f"model_name: expected a str, got {name!r}"
        name, origin = model_name_from_folder(experiment, problem)
        _LOG.warning("%s: %s; serving %s as model %r (the name from %s)", experiment.run_file, problem,
                     experiment.export_dir, name, origin)
    check_model_name(name, origin)
    if info is not None and not _saved_models_newest_first(experiment.export_dir):
        _report_no_version_yet(experiment, info)
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


def _report_no_version_yet(experiment: "Experiment", info: "RunRecord") -> None:
    """An experiment with no version yet: served once one is written, while the run may still write one (said in
    one line, with its status); refused in one line when it ended without any."""
    status = info.get("status")
    done, total, unit = _progress(info)
    if status in (Status.FINISHED, Status.FAILED):
        why = f": {info['error']}" if status == Status.FAILED and info.get("error") else ""
        raise UserInputError(f"{experiment.root}: exported_models: expected a version to serve, got none (status: "
                             f"{status}, {done} of {total} {unit}s done{why})")
    if status == Status.RUNNING:
        _LOG.info("%s has no exported version yet (status: running, %s %s of %s); it will be served as soon as "
                  "one is written", experiment.root, unit, done + 1, total)
    else:
        _LOG.info("%s has no exported version yet (status: %s, %s of %s %ss done); it will be served as soon as "
                  "one is written (resume it: %s train --resume %s)", experiment.root, status, done, total, unit,
                  command_name(), experiment.root)


def _progress(info: "RunRecord") -> tuple[int, object, str]:
    """(done, planned, 'epoch') of a run, or (rounds done, rounds planned, 'round') of a federation's server (its
    `nbEpoch` is each client's local epochs, not its progress)."""
    federation = info.get("federated")
    if isinstance(federation, dict):
        return int(info.get("rounds_completed") or 0), federation.get("rounds") or "?", "round"
    return int(info.get("epochs_completed") or 0), info.get("nbEpoch") or "?", "epoch"


def read_run_info(experiment: "Experiment") -> "tuple[RunRecord | None, str]":
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


def model_name_from_folder(experiment: "Experiment", why: str = "unreadable") -> "tuple[str, Path]":
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
    from experiments_manager.run.experiment import SETTINGS_COPY_NAME

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


def _saved_models_newest_first(export_dir: "str | os.PathLike[str]") -> "list[Path]":
    try:
        folders = [path for path in Path(export_dir).iterdir() if version_of(path.name) is not None]
    except OSError:
        return []
    folders.sort(key=lambda path: int(path.name), reverse=True)
    return [path / "saved_model.pb" for path in folders if (path / "saved_model.pb").is_file()]


def _model_signatures(saved_model: Path) -> "list[str]":
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
