"""An exported version sent to MLflow: a logged model of the run, and, when it improved on the run, a version of the
registered model; the alias `champion` names the model's best version on the run's monitor (a holder on another
monitor, set by hand say, keeps it).

A version's outbox entry (`kind` 'version') becomes an MLflow 3 LoggedModel of the run (`model_type`
'tensorflow-saved-model', tagged with the run folder, `export_version` and `epoch`) holding the SavedModel itself
(its files uploaded: a model from the registry serves where the run's folder is not mounted; a version of the demo
model is 96 kB, 0.12 s to upload to a server on the same host), linked to its epoch's metrics (the same points the
run has, now with the model's id). Every step finds before it creates (by those tags), so an entry sent again after a
crash makes nothing twice. One whose folder is gone when it is sent (the retention removed it; an offline run
synced late) is a logged model without files, never registered. Imports MLflow (only called by the sender).

Example:

```python
send_version(client, {"experiment_id": "1", "run_id": run_id}, entry, run_folder, outbox.entries())
```
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from experiments_manager.tracking.outbox import OutboxEntry, SentState

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

FOLDER_TAG = "experiments_manager.folder"
VERSION_TAG = "export_version"
CHAMPION = "champion"
MODEL_TYPE = "tensorflow-saved-model"
_LOG = logging.getLogger(__name__)


def send_version(client: MlflowClient, state: SentState, entry: OutboxEntry, folder: Path,
                 entries: list[OutboxEntry]) -> None:
    """Sends one version entry of the run in `folder` (`state`: its MLflow experiment and run; `entries`: the
    outbox's, for the epoch's metrics)."""
    from mlflow.entities import LoggedModelStatus, Metric

    version, step = entry.get("version", 0), entry.get("step", 0)
    tags = {FOLDER_TAG: str(folder.resolve()), VERSION_TAG: str(version), "epoch": str(step)}
    model = _logged_model(client, state["experiment_id"], tags)
    if model is None:
        model = client.create_logged_model(state["experiment_id"], name=logged_model_name(folder.name, version),
                                           source_run_id=state["run_id"], tags=tags, model_type=MODEL_TYPE)
    files = folder / entry.get("path", "")
    if str(model.status) != str(LoggedModelStatus.READY):
        if not files.is_dir():
            client.set_logged_model_tags(model.model_id, {"files": "removed before they were sent"})
            client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            _LOG.warning("MLflow: version %s of %s was removed before it was sent: a logged model without its files, "
                         "not registered", version, folder)
            return
        client.log_model_artifacts(model.model_id, str(files))
        client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    elif not _has_files(model):
        return
    epoch = next((earlier for earlier in reversed(entries)
                  if earlier.get("kind") == "metrics" and earlier.get("step") == step), None)
    if epoch is not None:  # the run's points of that epoch, now also the model's
        client.log_batch(state["run_id"], metrics=[Metric(key, value, epoch["at"], step, model_id=model.model_id)
                                                   for key, value in epoch.get("metrics", {}).items()])
    if entry.get("registered_model"):
        register(client, entry, tags, model.model_id, state["run_id"])


def logged_model_name(run_name: str, version: int) -> str:
    """`<run folder>-v<version>`, the characters MLflow refuses in a logged model's name (/ : . % " ') as `_`."""
    return re.sub(r"""[/:.%"']""", "_", f"{run_name}-v{version}")


def _has_files(model: Any) -> bool:
    return bool(model.tags.get("files") != "removed before they were sent")


def _logged_model(client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> Any:
    """The logged model of the run's version (by its folder and version tags), or None."""
    found = client.search_logged_models([experiment_id], filter_string=_version_filter(tags), max_results=1)
    return found[0] if found else None


def register(client: MlflowClient, entry: OutboxEntry, tags: dict[str, str], model_id: str, run_id: str) -> None:
    """The version joins its registered model (once); `champion` moves to the best version on its monitor."""
    from mlflow.exceptions import MlflowException

    name = entry.get("registered_model", "")
    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    monitor, value = next(iter(entry.get("metrics", {}).items()), ("", None))
    mode = entry.get("tags", {}).get("monitor_mode", "")
    version_tags = {**tags, "monitor": monitor, "monitor_mode": mode, **({"value": repr(value)} if value is not None
                                                                          else {})}
    found = client.search_model_versions(f"name = '{quoted(name)}' AND {_version_filter(tags)}")
    registered = found[0] if found else client.create_model_version(
        name, source=f"models:/{model_id}", run_id=run_id, tags=version_tags, model_id=model_id,
        await_creation_for=0)
    holder = champion_of(client, name)
    if holder is not None and not _same_monitor(holder.tags, version_tags):
        _LOG.info("MLflow: %s version %s registered; %s stays with version %s (another monitor)", name,
                  registered.version, CHAMPION, holder.version)
        return
    best = _best_version(client, name, version_tags) or registered
    if holder is None or holder.version != best.version:
        client.set_registered_model_alias(name, CHAMPION, best.version)


def champion_of(client: MlflowClient, name: str) -> Optional[ModelVersion]:
    """The version the alias `champion` of registered model `name` names, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as error:
        if error.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):  # no such alias (yet)
            return None
        raise


def _same_monitor(one: dict[str, str], other: dict[str, str]) -> bool:
    return one.get("monitor") == other.get("monitor") and one.get("monitor_mode") == other.get("monitor_mode")


def _best_version(client: MlflowClient, name: str, tags: dict[str, str]) -> Optional[ModelVersion]:
    """The best registered version of `name` on the monitor `tags` name (the earliest of equals), or None. Chosen
    from every version, not against the alias' holder: of runs registering at once, the last to choose sees all."""
    maximized = tags.get("monitor_mode") == "max"
    scored = []
    for version in client.search_model_versions(f"name = '{quoted(name)}'"):
        try:
            value = float(version.tags["value"])
        except (KeyError, ValueError):
            continue
        if _same_monitor(version.tags, tags):
            scored.append((-value if maximized else value, int(version.version), version))
    return min(scored, key=lambda item: item[:2])[2] if scored else None


def _version_filter(tags: dict[str, str]) -> str:
    """A search filter for the run folder's exported version `tags` name."""
    return " AND ".join(f"tags.`{key}` = '{quoted(tags[key])}'" for key in (FOLDER_TAG, VERSION_TAG))


def quoted(value: str) -> str:
    """`value` inside a single-quoted MLflow search filter string."""
    return value.replace("'", "\\'")
