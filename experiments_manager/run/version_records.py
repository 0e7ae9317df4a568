"""Which epoch each exported version holds, and which version is a run's best.

A version's record is `{"epoch": E, "monitor": "val_loss", "value": 0.0123, "at": "<iso time>"}`: the epoch
(counted from 1) whose EMA weights it holds, the monitored value they reached and when the version was written
(its files committed, not when the epoch asked for it: a background write may end later). The exporter writes it twice:
into the version's folder (`assets.extra/version_record.json`, inside the version's checksums, where the server
reads it for the model's metadata) and into run.json's `version_records` (`{"<version>": record}`) once the version
is on disk. A run's best version is the one holding its best epoch (run.json's `best_epoch`): what the end-of-
training summary, `outcome.model` and `em.load(RUN)` all mean. This module does not import TensorFlow. Which
folders are versions is `served_layout.py`'s rule (`present_versions`, imported from there by every caller).

Example:

```python
info = experiment.run_info()
version, record = best_version(info, exporter.versions())
describe(version, record)        # 'version 3 (epoch 2, val_loss 0.0123)'
```
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, TypedDict, cast

from experiments_manager.run.names import now
from experiments_manager.run.served_layout import present_versions
from experiments_manager.run.served_layout import version_of
from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.utils.atomic import PathLike

RECORD_FILE = "assets.extra/version_record.json"  # TF Serving leaves assets.extra/ to its users (warm-up requests)
CLASS_NAMES_FILE = "assets.extra/class_names.json"  # the settings' `class_names`, when given: the model's labels


class VersionRecord(TypedDict, total=False):
    """A version's record: its one typed definition (what `version_record` makes and `write_record_file` writes,
    what `read_record_file` and `records_of` read). `version_record` writes every key; a record read may lack one
    (an older engine's, or one written by hand), hence `total=False`.
    """

    epoch: Optional[int]  # counted from 1; None when not known
    monitor: Optional[str]  # the settings' `monitored_loss_name`
    value: Optional[float]  # None when not known or not a finite number
    at: str  # when the version was exported (ISO 8601)


def version_record(epoch: Optional[int], monitor: Optional[str], value: object) -> VersionRecord:
    """A version's record.

    Args:
        epoch: the epoch (counted from 1) whose weights the version holds, or None when not known.
        monitor: the monitored quantity's name (the settings' `monitored_loss_name`).
        value: its value at that epoch (None when not known or not a finite number).

    Example:

    ```python
    version_record(2, "val_loss", 0.0123)   # {'epoch': 2, 'monitor': 'val_loss', 'value': 0.0123, 'at': '...'}
    ```
    """
    number = float(value) if isinstance(value, (int, float)) and math.isfinite(float(value)) else None
    return {"epoch": epoch, "monitor": monitor, "value": number, "at": now()}


def write_record_file(version_folder: PathLike, record: VersionRecord) -> None:
    """Writes `record` into a version's folder (still its temporary folder: the rename publishes it whole)."""
    path = Path(version_folder) / RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")


def read_record_file(version_folder: PathLike) -> Optional[VersionRecord]:
    """The record in a version's folder, or None (a version of an older engine, or an unreadable file)."""
    try:
        record = json.loads((Path(version_folder) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return cast(VersionRecord, record) if isinstance(record, dict) else None


def write_class_names_file(version_folder: "str | Path", class_names: Optional[Iterable[object]]) -> None:
    """Writes the settings' `class_names` into a version's folder (still its temporary folder, before its checksums
    are written); nothing when the settings give none.

    Args:
        version_folder: the version's folder.
        class_names: the class names by class id, or None.

    Example:

    ```python
    write_class_names_file(tmp, ["cat", "dog"])   # tmp/assets.extra/class_names.json: ["cat", "dog"]
    ```
    """
    if class_names is None:
        return
    path = Path(version_folder) / CLASS_NAMES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([str(name) for name in class_names]) + "\n")


def read_class_names_file(version_folder: "str | Path") -> Optional[list[str]]:
    """The class names in a version's folder (a list of str), or None (none given, an older version, unreadable).

    Args:
        version_folder: the version's folder.

    Example:

    ```python
    read_class_names_file("exp/exported_models/3")   # ['cat', 'dog'] or None
    ```
    """
    try:
        names = json.loads((Path(version_folder) / CLASS_NAMES_FILE).read_text())
    except (OSError, ValueError):
        return None
    return names if isinstance(names, list) and all(isinstance(name, str) for name in names) else None


def records_of(info: Mapping[str, Any]) -> dict[int, VersionRecord]:
    """run.json's `version_records` as {version (int): record}; {} for older runs or a damaged key."""
    found: dict[int, VersionRecord] = {}
    records = info.get("version_records")
    for key, record in (records.items() if isinstance(records, dict) else ()):
        version = version_of(str(key))  # the key is the version's folder name
        if version is not None and isinstance(record, dict):
            found[version] = cast(VersionRecord, record)
    return found


def best_version(info: Mapping[str, Any], present: Iterable[int]) -> tuple[Optional[int], Optional[VersionRecord]]:
    """(version, its record or None) of the run's best version among the versions `present` on disk.

    The best is the newest present version whose record holds run.json's `best_epoch`; when none does (a run of an
    older engine, which recorded no epochs, or a best version removed by hand), the newest present version.

    Args:
        info: the run's run.json.
        present: the version numbers on disk.

    Returns:
        (None, None) when no version is present.

    Example:

    ```python
    best_version({"best_epoch": 2, "version_records": {"3": {"epoch": 2}}}, [2, 3])   # (3, {'epoch': 2})
    ```
    """
    present = sorted(present)
    if not present:
        return None, None
    records = records_of(info)
    best_epoch = info.get("best_epoch")
    holding = [version for version in present if best_epoch is not None
               and records.get(version, {}).get("epoch") == best_epoch]
    version = holding[-1] if holding else present[-1]
    return version, records.get(version)


def describe(version: int, record: Optional[VersionRecord], best: bool = False) -> str:
    """'version 3 (epoch 2, val_loss 0.0123)', or 'version 3' without a record.

    Args:
        version: the version number.
        record: its record, or None.
        best: say 'best val_loss' (default False).

    Example:

    ```python
    describe(3, {"epoch": 2, "monitor": "val_loss", "value": 0.0123}, best=True)  # '... best val_loss 0.0123)'
    ```
    """
    held = version_summary(record, best)
    return f"version {version} ({held})" if held else f"version {version}"


def version_summary(record: Optional[VersionRecord], best: bool = False) -> str:
    """'epoch 2, best val_loss 0.0123' of a version's record; '' without a record (an older engine's version)."""
    if not record or record.get("epoch") is None:
        return ""
    value = record.get("value")
    label = f"best {record.get('monitor')}" if best else record.get("monitor")
    return f"epoch {record['epoch']}" + (f", {label} {value:.4g}" if isinstance(value, (int, float)) else "")


def reported_version(info: Mapping[str, Any], export_dir: PathLike) -> tuple[Optional[int], str]:
    """(version, 'epoch 2, best val_loss 0.0123') of the version a run reports (its best), or (None, '').

    Example:

    ```python
    version, held = reported_version(experiment.run_info(), experiment.export_dir)
    ```
    """
    version, record = best_version(info, present_versions(export_dir))
    if version is None:
        return None, ""
    return version, version_summary(record, best=bool(record and record.get("epoch") == info.get("best_epoch")))


def reported_model(info: Mapping[str, Any], export_dir: PathLike) -> str:
    """The end-of-training summary's 'exported model': '<export_dir>/3 (epoch 2, best val_loss 0.0123)', or
    'none yet'."""
    version, held = reported_version(info, export_dir)
    if version is None:
        return "none yet"
    return f"{Path(export_dir) / str(version)}" + (f" ({held})" if held else "")


def chosen_version(experiment: Experiment, version: Optional[int] = None,
                   option: str = "version") -> tuple[int, Optional[VersionRecord], bool]:
    """(version, its record or None, whether it is the best): `version`, or the run's best when None.

    Args:
        experiment: the `Experiment`.
        version: a version number, or None for the run's best (see `version_records.best_version`).
        option: how the caller names the version in a message (default 'version'; the command line: '--version').

    Raises:
        UserInputError: the run has no version yet (its status said), or not that one (those it has said).
    """
    info = experiment.run_info()
    present = present_versions(experiment.export_dir)
    if not present:
        raise UserInputError(f"{experiment.root}: no exported version yet (the run is {info.get('status')}, "
                             f"{info.get('epochs_completed') or 0} epochs done)")
    if version is None:
        chosen, record = best_version(info, present)
        assert chosen is not None  # a version is present
        return chosen, record, True
    if version not in present:
        raise UserInputError(f"{experiment.root}: {option}: expected one of the exported versions "
                             f"{', '.join(map(str, present))}, got {version}")
    best, _ = best_version(info, present)
    return version, records_of(info).get(version), version == best
