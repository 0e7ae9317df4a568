"""Every attempt at a run, in run.json's `attempts`: who ran it, where, with which code, and how it ended.

A run is trained by one or more attempts: the first `train`, then each `train --resume` (a Slurm requeue, a crash,
a Ctrl-C). Each is one `Attempt` (the one typed definition of an entry of `attempts`). The run's top-level fields
(`status`, `reason`, `error`, `exit_code`, `ended`, `host`) describe the latest attempt only.

**Code identity.** An attempt records the SHA-256 of the code it ran: the settings file and the model file (the
experiment's copies) and the user's own modules they imported (files outside the Python installation and
site-packages), plus the git commit (with `-dirty`) of the settings' folder. A resume compares those files with
what the previous attempt recorded and refuses a change unless told to accept it (`code_changes`).

This module does not import TensorFlow.

Example:

```python
attempt = Attempt.starting(["train", "--resume", "exp"], number=2)
info["attempts"].append(attempt.as_json())
```
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import os
import platform
import socket
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

from experiments_manager.run.record import Status
from experiments_manager.utils.checksums import file_digest
from experiments_manager.utils.cpus import usable_cpus

if TYPE_CHECKING:
    from experiments_manager.utils.atomic import PathLike

ACCEPT_CODE_CHANGE_FLAG = "--accept-code-change"
ENGINE_FOLDER = Path(__file__).resolve().parents[1]  # experiments_manager itself: never the run's code
_GENERATED_MODULES = ("__autograph_generated_file",)  # TensorFlow's autograph: temporary files, not the user's code


@dataclass
class Attempt:
    """One attempt at a run (an entry of run.json's `attempts`).

    Args:
        number: 1 for the first `train`, then one more for each resume.
        command: its command line.
        host, pid: where it ran.
        slurm_job_id, slurm_array_task_id, slurm_restart_count: its Slurm job, when under Slurm.
        started, ended: ISO 8601 moments (ended None while it runs, or when it was killed outright).
        status: 'running', then 'finished', 'failed' or 'interrupted'.
        exit_code, reason, error: how it ended.
        code: {file: SHA-256} of the code it ran (see the module's docstring).
        git_commit: the settings folder's commit, with '-dirty' when it has changes, or None.
        accepted_code_change: the files whose change the user accepted when resuming with it.
        epochs: the epochs in all this attempt trains up to when it is not the settings' `nbEpoch` (an extension,
            `train --resume RUN --epochs N`, and the attempts that resume it); None otherwise (left out of JSON).
        extended_from: the epochs the run had trained when this attempt extended it, or None (left out of JSON).
        container: the Apptainer (or Singularity) image it ran in, as the container runtime names it in
            APPTAINER_CONTAINER / SINGULARITY_CONTAINER; None outside a container (left out of JSON).
        devices: how many devices it trained on (`device_count`), recorded once they are chosen; None before
            (left out of JSON).
        device_kind: 'gpu', or 'cpu' (then `devices` counts the CPU cores the process may run on); None before.
    """

    number: int
    command: list[str]
    host: str = ""
    pid: int = 0
    slurm_job_id: Optional[str] = None
    slurm_array_task_id: Optional[str] = None
    slurm_restart_count: Optional[int] = None
    started: str = ""
    ended: Optional[str] = None
    status: str = Status.RUNNING.value
    exit_code: Optional[int] = None
    reason: Optional[str] = None
    error: Optional[str] = None
    code: dict[str, Optional[str]] = field(default_factory=dict)
    git_commit: Optional[str] = None
    accepted_code_change: list[str] = field(default_factory=list)
    epochs: Optional[int] = None
    extended_from: Optional[int] = None
    container: Optional[str] = None
    devices: Optional[int] = None
    device_kind: Optional[str] = None

    @classmethod
    def starting(cls, command: Iterable[str], number: int, started: Optional[str] = None,
                 git_commit: Optional[str] = None) -> "Attempt":
        """The attempt this process starts now."""
        restarts = os.environ.get("SLURM_RESTART_COUNT")
        return cls(number=number, command=list(command), host=socket.gethostname(), pid=os.getpid(),
                   slurm_job_id=os.environ.get("SLURM_JOB_ID"),
                   slurm_array_task_id=os.environ.get("SLURM_ARRAY_TASK_ID"),
                   slurm_restart_count=int(restarts) if restarts and restarts.isdigit() else None,
                   started=started or datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                   git_commit=git_commit,
                   container=os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"))

    @classmethod
    def before_attempts_were_recorded(cls, info: Mapping[str, Any]) -> dict[str, Any]:
        """What run.json of an older engine (no `attempts`) says of the run so far, as attempt 1 (JSON)."""
        return cls(number=1, command=list(info.get("command") or []),
                   host=info.get("host") or "", started=info.get("started") or "", ended=info.get("ended"),
                   status=info.get("status") or Status.RUNNING.value, exit_code=info.get("exit_code"),
                   reason=info.get("reason"), error=info.get("error"), git_commit=info.get("git_commit")).as_json()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Attempt":
        """An attempt as run.json holds it (fields a later version added are ignored)."""
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for optional in _OPTIONAL_FIELDS:
            if data[optional] is None:
                del data[optional]
        return data


# only for an extended run, a run in a container, an attempt that chose its devices
_OPTIONAL_FIELDS = ("epochs", "extended_from", "container", "devices", "device_kind")


def device_count(device_names: Iterable[str]) -> tuple[str, int]:
    """('gpu', the GPUs) of the devices training uses (`distribute.devices.select_devices`' names), or ('cpu', the
    CPU cores this process may run on: its affinity, which Slurm's allocation sets)."""
    gpus = sum("gpu" in name.lower() for name in device_names)
    if gpus:
        return "gpu", gpus
    return "cpu", usable_cpus()


def device_hours(info: Mapping[str, Any], moment: Optional[datetime.datetime] = None) -> Optional[float]:
    """The device-hours a run has cost: each attempt's wall time (started to ended; to `moment`, default now, for
    the attempt of a run still running) times its devices, times the workers of a multi-worker run. None when no
    attempt recorded its devices (an older engine's run). An attempt killed outright has no end: it is not counted.

    Example:

    ```python
    device_hours(Experiment("experiments/curve_fitting/run_1").run_info())  # 0.0123
    ```
    """
    attempts = info.get("attempts") or []
    if not any(isinstance(attempt, dict) and attempt.get("devices") for attempt in attempts):
        return None
    workers = info.get("workers")
    workers = workers if isinstance(workers, int) and workers > 0 else 1
    total = 0.0
    for index, attempt in enumerate(attempts):
        if not isinstance(attempt, dict) or not attempt.get("devices"):
            continue
        end = attempt.get("ended")
        if end is None and index == len(attempts) - 1 and info.get("status") == Status.RUNNING:
            end = (moment or datetime.datetime.now()).astimezone().isoformat()
        seconds = _seconds_between(attempt.get("started"), end)
        if seconds is not None:
            total += seconds * int(attempt.get("devices") or 0) * workers
    return total / 3600.0


def _seconds_between(start: object, end: object) -> Optional[float]:
    try:
        return max(0.0, (datetime.datetime.fromisoformat(str(end))
                         - datetime.datetime.fromisoformat(str(start))).total_seconds())
    except (TypeError, ValueError):
        return None


def epochs_asked(attempts: object) -> Optional[int]:
    """The epochs in all the latest attempt that set them asked for (`Attempt.epochs`: a run extended with
    `--epochs`), or None: the run trains the settings' `nbEpoch`.

    Args:
        attempts: run.json's `attempts` (None or damaged entries are skipped).

    Example:

    ```python
    epochs_asked([{"number": 1}, {"number": 2, "epochs": 6, "extended_from": 3}])   # 6
    ```
    """
    for attempt in reversed(attempts if isinstance(attempts, list) else []):
        epochs = attempt.get("epochs") if isinstance(attempt, dict) else None
        if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0:
            return epochs
    return None


def file_sha256(path: PathLike) -> Optional[str]:
    """The SHA-256 of a file, or None when it cannot be read."""
    try:
        return file_digest(path)["sha256"]
    except OSError:
        return None


def user_modules(skip_names: tuple[str, ...] = ()) -> list[Path]:
    """The source files of the modules imported so far that are the user's own: not in the Python installation,
    not in a site-packages folder, not this package. What a model file imports from beside it, say.

    Args:
        skip_names: module-name prefixes to leave out (the settings and model modules, recorded by their copies).
    """
    found = set()
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name == "__main__" or name.startswith(_GENERATED_MODULES) or (skip_names and name.startswith(skip_names)):
            continue  # a driver script (em.train in a script of the user's) is not what the run computes
        if path and is_user_module_file(path) and os.path.isfile(os.path.realpath(path)):  # (not generated and gone)
            found.add(Path(os.path.realpath(path)))
    return sorted(found)


def is_user_module_file(path: str) -> bool:
    """Whether a module's source file `path` is the user's own: a `.py` file outside the Python installation, any
    site-packages folder and this package."""
    if not path.endswith(".py") or "site-packages" in path or "dist-packages" in path:
        return False  # cheap string checks first: most of 4000 modules are installed packages
    resolved = os.path.realpath(path)
    return not (resolved.startswith(_installed_folders()) or resolved.startswith(str(ENGINE_FOLDER) + os.sep)
                or "site-packages" in resolved)


@functools.lru_cache(maxsize=1)
def _installed_folders() -> tuple[str, ...]:
    """The Python installation's library folders (each ending with a separator)."""
    return tuple(sorted({os.path.realpath(sysconfig.get_paths()[key]) + os.sep
                         for key in ("stdlib", "platstdlib", "purelib", "platlib")}))


def code_identity(files: Iterable[PathLike], root: PathLike) -> dict[str, Optional[str]]:
    """{file: SHA-256} of `files` for run.json: a file inside the experiment folder `root` (the copies) by its path
    relative to it (the folder may move), any other by its absolute path."""
    root = Path(root).resolve()
    identity = {}
    for path in files:
        resolved = Path(path).resolve()
        name = resolved.relative_to(root) if resolved.is_relative_to(root) else resolved
        identity[str(name)] = file_sha256(resolved)
    return identity


def recorded_code(info: Mapping[str, Any]) -> dict[str, Optional[str]]:
    """The `code` of a run.json's (`info`) last attempt that recorded one ({file: SHA-256}: `code_identity`), or {}."""
    attempts = info.get("attempts")
    return next((attempt["code"] for attempt in reversed(attempts if isinstance(attempts, list) else [])
                 if isinstance(attempt, dict) and isinstance(attempt.get("code"), dict) and attempt["code"]), {})


def code_changes(recorded: Mapping[str, Optional[str]], root: PathLike) -> list[str]:
    """The files of `recorded` (a previous attempt's `code`, see `code_identity`) whose content is not that now:
    '/home/me/helpers.py (changed)'. A file no longer there is not a change: the code was staged elsewhere (a
    node's $TMPDIR, another mount), or its import fails loudly; what silently changes a resumed run is a file
    edited in place."""
    changes = []
    for path, digest in sorted(recorded.items()):
        if is_engine_file(path):
            continue  # an earlier engine recorded its own files (those of an editable install) as the run's code
        now = file_sha256(Path(root, path))  # an absolute path stays itself
        if now is not None and now != digest:
            changes.append(f"{path} (changed)")
    return changes


def is_engine_file(path: PathLike) -> bool:
    """True for a file of experiments_manager: this install's (`ENGINE_FOLDER`), or one a run recorded from another
    install of it (a path ending in `experiments_manager/<a file this install has>`)."""
    parts = Path(path).parts
    if Path(path).is_absolute() and Path(os.path.realpath(path)).is_relative_to(ENGINE_FOLDER):
        return True
    for index, part in enumerate(parts[:-1]):
        if part == ENGINE_FOLDER.name and ENGINE_FOLDER.joinpath(*parts[index + 1:]).is_file():
            return True
    return False


def settings_folder(info: Mapping[str, Any], root: PathLike) -> Path:
    """The folder of the settings file a run was started from (run.json's `settings_file`: its git commit), or the
    experiment's own folder when that is gone."""
    original = info.get("settings_file")
    return Path(original).parent if original and Path(original).parent.is_dir() else Path(root)


def git_commit(folder: PathLike) -> Optional[str]:
    """The git commit of the checkout holding `folder`, with '-dirty' when it has uncommitted changes, or None."""
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def package_versions() -> dict[str, str | None]:
    """The versions of Python, TensorFlow, Keras and this package (run.json's `versions`)."""
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("tensorflow", "keras", "experiments_manager"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions
