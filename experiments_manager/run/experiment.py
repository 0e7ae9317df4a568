"""The experiment folder: naming, layout, metadata (run.json) and resume discovery (no TensorFlow: `list` is fast).

Layout (the README, "The experiment folder"):

```
<workingFolder>/<session_name>_<YYYY-mm-dd--HH-MM-SS>_<key>=<value>.../   (the hparams set on the command line)
  experiment_settings.py     copy of the settings file as run
  <model_name>.py            copy of the model file
  run.json                   status, command, hparams, seed, versions, best value, exports
  checkpoints/               what resume needs (a link to scratch storage with `checkpoints_folder`)
  logs/                      TensorBoard
  exported_models/<N>/       SavedModel versions (TF Serving layout)
  models.config              TF Serving model config
  history.csv, training_curves.png   one row / one point per epoch
  train.log                  the console output of every attempt (log.py)
```

Long because every command opens a run through this one class: its layout, its creation and the checks a reader and
a writer make before anything else.
"""

import contextlib
import datetime
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, cast

from experiments_manager.run.attempts import code_changes, code_identity, recorded_code
from experiments_manager.run.checkpoints_link import link_checkpoints, own_links, refuse_links, refuse_lost_checkpoints
from experiments_manager.run.names import folder_name, folder_stamp, make_unique_dir, now, varied_hparams
from experiments_manager.run.migrations import current_run_record
from experiments_manager.run.record import RunRecord, record_problems
from experiments_manager.run.record_writer import RunRecordWriter, first_record
from experiments_manager.run.space_reserve import RESERVE_NAME
from experiments_manager.utils.atomic import (PathLike, copy_atomically, fsync_folder, is_temporary_name,
                                             remove_leftovers, remove_tree_atomically, write_json_atomically)
from experiments_manager.utils.code_trust import refuse_foreign_code
from experiments_manager.utils.command_name import command_name
from experiments_manager.utils.environment_failures import raise_environment_failure
from experiments_manager.utils.errors import UserInputError
from experiments_manager.utils.lease import LEASE_NAME, Lease
from experiments_manager.utils.lease_holder import lease_timeout

_LOG = logging.getLogger(__name__)
SETTINGS_COPY_NAME = "experiment_settings.py"
CODE_FOLDER = "code"  # the copies of the user's modules a run imported (`record_code`)
RUN_FILE_NAME = "run.json"
STARTING_MARKER_NAME = ".starting"  # a folder reserved by a run still starting (folder_reservation.py): no run.json yet
SWEEP_SPEC_NAME = "sweep.json"  # a sweep folder's spec (sweeps/folder.py): its trials' experiments are inside


class Experiment:
    """One run's folder and its metadata.

    Args:
        root: the experiment folder.

    Example:

    ```python
    experiment = Experiment.open("experiments/curve_fitting/my_test_2026-11-21--10-00-00_lr0.1")
    experiment.run_info()["status"]
    ```
    """

    def __init__(self, root: PathLike, trust_code: bool = False) -> None:
        self.root = Path(root)
        self.trust_code = trust_code  # load its code although another user owns it (`refuse_foreign_code`)
        self.lease: Optional[Lease] = None  # the `Lease` while this process writes the folder (`held`)
        self.record = RunRecordWriter(self)  # run.json's transitions (`record_writer.py`)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def settings_copy(self) -> Path:
        return self.root / SETTINGS_COPY_NAME

    @property
    def run_file(self) -> Path:
        return self.root / RUN_FILE_NAME

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def export_dir(self) -> Path:
        return self.root / "exported_models"

    @property
    def models_config(self) -> Path:
        return self.root / "models.config"

    @property
    def curves_png(self) -> Path:
        return self.root / "training_curves.png"

    @property
    def history_csv(self) -> Path:
        return self.root / "history.csv"

    def model_file_copy(self) -> Path:
        return self.root / f"{self.run_info()['model_name']}.py"

    @classmethod
    def create(cls, settings: Any, command: Sequence[str], root: Optional[PathLike] = None,
               parent: Optional[PathLike] = None, reservation: Any = None) -> "Experiment":
        """Creates a new experiment folder for `settings` and records run.json.

        Args:
            settings: a loaded `Settings`.
            command: the command line that started the run (list of str).
            root: the folder to create (a federated client's folder inside its federation's); default: a new
                dated folder in `parent`.
            parent: where the new dated folder goes; default: the settings' `workingFolder`.
            reservation: a `FolderReservation` made before the settings were loaded (default None): its folder
                is used when it is the one these settings name, and released otherwise.

        Raises:
            UserInputError: EXPERIMENTS_MANAGER_LEASE_TIMEOUT is not a number of seconds the lease takes: said before
                the folder exists (the attempt takes the lease only after it is made).
        """
        lease_timeout()
        moment = datetime.datetime.now()  # one moment for the folder name and run.json's `started`
        inside_another = root is not None  # a federation's client: its checkpoints stay in its own folder
        if reservation is not None and root is None and reservation.fits(settings, parent):
            moment, base, root = reservation.moment, reservation.base, cast(Path, reservation.claim())
            repeat = root.name[len(base) + 1:]  # as below
        elif root is None:
            if reservation is not None:
                reservation.release()
            parent = Path(parent if parent is not None else settings.experiment.working_folder)
            parent.mkdir(parents=True, exist_ok=True)
            base = folder_name(settings.experiment.session_name, folder_stamp(moment), settings.overrides)
            root = make_unique_dir(parent, base)
            repeat = root.name[len(base) + 1:]  # '1' when a run with the same name started in the same second
        else:
            root = Path(root)  # a str too (federated/apps.py passes one)
            if root.is_dir() and not (root / RUN_FILE_NAME).exists():  # a creation killed before its run.json
                shutil.rmtree(root)  # (no lease yet, no run): its leftovers, cleared by this next creation
            root.mkdir(parents=True)
            repeat = ""
        fsync_folder(root.parent)  # the new folder's name survives a power loss
        experiment = cls(root)
        linked: Optional[Path] = None
        try:  # a run that cannot start (a full disk) leaves no folder: nothing half-made
            if settings.from_file:
                copy_atomically(settings.path, experiment.settings_copy)
            else:
                experiment.settings_copy.write_text(
                    f'"""The settings of this experiment were built in Python ({settings.path.name}), not read from a '
                    'file.\n\nResume it from Python: em.resume(folder, settings=<the same settings>)."""\n')
            copy_atomically(settings.model_file, root / f"{settings.model_name}.py")
            record = first_record(settings, command, now(moment), repeat)
            if settings.experiment.checkpoints_folder is not None and not inside_another:  # on scratch storage
                linked = link_checkpoints(experiment.checkpoints_dir, Path(settings.experiment.checkpoints_folder))
                record["checkpoints_link"] = str(linked)
            experiment.write_run_info(record)
        except BaseException:
            with contextlib.suppress(OSError):  # the clean-up's own failure does not hide why the start failed
                remove_tree_atomically(root)
                if linked is not None:
                    linked.rmdir()
            raise
        return experiment

    def refuse_links(self) -> None:
        """What a writer checks first (`checkpoints_link.refuse_links`): one line naming a symbolic link in the folder
        other than its own `checkpoints/` (the settings' `checkpoints_folder`), or its own leading elsewhere or nowhere.

        Raises:
            UserInputError: such a link.
        """
        refuse_links(self.root, own_links(self.checkpoints_dir, self.run_info()))

    def refuse_lost_checkpoints(self) -> None:
        """A resume's check: its `checkpoints/` a link whose place is gone is one line (`checkpoints_link.py`)."""
        refuse_lost_checkpoints(self.checkpoints_dir, self.root)

    @classmethod
    def open(cls, root: PathLike, record: bool = True, trust_code: bool = False) -> "Experiment":
        """Opens an existing experiment folder (resume, evaluate, serve, predict).

        Args:
            root: the folder.
            record: read and check run.json now (`run_info`; default True); False for a reader that tolerates a
                damaged one (`serve`).
            trust_code: its copies may be executed although another user owns them (`--trust-code`; default
                False: `refuse_foreign_code` refuses them).

        Raises:
            UserInputError: not an experiment folder, its settings copy missing, a run.json that cannot be read.
        """
        experiment = cls(root, trust_code)
        if not experiment.run_file.is_file():
            if (experiment.root / STARTING_MARKER_NAME).is_file():
                raise UserInputError(f"{root}: the run is still starting (no {RUN_FILE_NAME} yet): try again once it "
                                     "prints its first epoch")
            raise UserInputError(f"{root}: not an experiment folder (no {RUN_FILE_NAME})")
        if not experiment.settings_copy.is_file():
            raise UserInputError(f"{root}: {SETTINGS_COPY_NAME}: missing from the experiment folder")
        if record:
            experiment.run_info()  # a record that cannot be read is said at once
        return experiment

    @contextlib.contextmanager
    def held(self, command: Sequence[str]) -> Iterator[Lease]:
        """Within the block this process is the experiment's one writer: its lease is taken (`utils/lease.py`).
        Commands enter it through `lifecycle.attempt`, which also copies the console and records the ending.

        Raises:
            LeaseHeld: another live run writes the experiment (one line naming it; exit code 75).

        Example:

        ```python
        with experiment.held(running_command()):
            experiment.record.checkpoints_pruned()
        ```
        """
        self.lease = Lease.acquire(self.root, command, what="experiment")
        try:
            yield self.lease
        finally:
            self.lease.release()
            self.lease = None

    def replica(self, root: PathLike) -> "Experiment":
        """A private copy of this experiment (settings, run.json, checkpoints; no exports or logs) at `root`, where a
        non-chief worker of a multi-worker run resumes: it trains in step with the chief but must not write there.

        The chief is starting meanwhile (run.json's new attempt, a killed writer's leftovers removed): its writes in
        progress are left out, and a file it replaced or removed between the listing and the copy is skipped (the
        chief waits for this worker before training: its checkpoints do not change)."""
        unshared = shutil.ignore_patterns("exported_models", "logs", "*.png", LEASE_NAME, f"{LEASE_NAME}.*",
                                          f".{LEASE_NAME}.*", RESERVE_NAME)
        shutil.copytree(self.root, root, copy_function=_copy_unless_gone, ignore=lambda folder, names: {
            *unshared(folder, names), *(name for name in names if is_temporary_name(name))})
        return type(self)(root)

    def run_info(self) -> RunRecord:
        """run.json as read now, checked (`record.record_problems`: a folder is data, whoever wrote it; the first
        problem raised as a `UserInputError`) and in the current format (`migrations.py` reads earlier ones)."""
        try:
            data = json.loads(self.run_file.read_text())
        except (OSError, ValueError) as error:
            raise_environment_failure(error, str(self.root))  # the storage failed the read (EIO, ESTALE): exit 75
            raise UserInputError(f"{self.run_file}: expected a JSON object: {error}") from None
        problems = record_problems(data, str(self.run_file))
        if problems:
            raise UserInputError(problems[0])
        return current_run_record(data)

    def write_run_info(self, info: RunRecord) -> None:
        self.check_writer()
        write_json_atomically(self.run_file, info, before_commit=self.check_writer)  # again once it is durable

    def check_writer(self) -> None:
        """Raises `LeaseLost` when this process held the experiment's lease and lost it (`Lease.fenced`)."""
        if self.lease is not None:
            self.lease.check()

    def record_code(self, files: Iterable[PathLike]) -> None:
        """Records the SHA-256 of the code this attempt runs (`files`: the settings and model copies, the user's
        modules they imported) in its `attempts` entry, and keeps a copy of each module outside the folder (a helper
        beside the model file) in `code/<sha256 12>-<name>`, once per content: what a changed file was."""
        identity = code_identity(files, self.root)
        for path, digest in identity.items():
            if digest is not None and Path(path).is_absolute():
                copy = self.code_copy(path, digest)
                if not copy.is_file():
                    copy.parent.mkdir(exist_ok=True)
                    copy_atomically(path, copy)
        self.record.code(identity)

    def code_copy(self, path: PathLike, digest: str) -> Path:
        """Where the run keeps its copy of the module `path` whose content had SHA-256 `digest`."""
        return self.root / CODE_FOLDER / f"{digest[:12]}-{Path(path).name}"

    def code_changes(self) -> list[str]:
        """The files whose content changed since the last attempt that recorded its code ([] when none did)."""
        return code_changes(self.recorded_code(), self.root)

    def recorded_code(self) -> dict[str, Optional[str]]:
        """The code the last attempt that recorded its code ran ({file: SHA-256}, `record_code`), or {}."""
        return recorded_code(self.run_info())

    def refuse_code_changes(self, reading: str, accepted: bool, how_to_accept: str) -> None:
        """Refuses, in one line, to rebuild the run's model from code that changed since its last attempt ran (a
        helper module edited after training: `code_changes`), unless `accepted` (then one warning line).

        Args:
            reading: what would run the other code ('evaluate', 'em.load', 'export').
            accepted: the user accepted the change (`--accept-code-change`).
            how_to_accept: the flag or argument that accepts it, as the user gives it.

        Raises:
            UserInputError: a file changed and `accepted` is False (exit 2).
        """
        changes = self.code_changes()
        if changes and not accepted:
            kept = self._kept_copies(changes)
            raise UserInputError(f"{self.root}: the code changed since the run trained: {', '.join(changes)}; "
                                 f"{reading} would rebuild the model with it, not with the code its versions were "
                                 f"trained with: put it back{kept}, or accept it with {how_to_accept}")
        if changes:
            _LOG.warning("%s with changed code (accepted): %s", reading, ", ".join(changes))

    def refuse_foreign_code(self) -> None:
        """Refuses, in one line, to execute the run's copies when another user owns them or its record (a
        colleague's folder: `utils/code_trust.py`), unless the experiment was opened with `trust_code`.

        Raises:
            UserInputError: another user owns the folder, run.json or a copy (exit 2).
        """
        if self.trust_code:
            return
        name = self.run_info().get("model_name")
        copies = [self.root / f"{name}.py"] if isinstance(name, str) else []
        refuse_foreign_code(self.root, [self.run_file, self.settings_copy, *copies], trusted=False)

    def _kept_copies(self, changes: list[str]) -> str:
        """' (the run's copy: RUN/code/...)' naming the kept copy of each of `changes` (`code_changes`), or ''."""
        copies = [str(self.code_copy(path, digest)) for path, digest in self.recorded_code().items()
                  if digest is not None and f"{path} (changed)" in changes and self.code_copy(path, digest).is_file()]
        return f" (the run's copy: {', '.join(copies)})" if copies else ""

    def remove_leftovers(self) -> list[str]:
        """Removes what writers killed mid-write left in this folder (temporary files and folders of dead pids)."""
        removed = []
        for folder, subfolders, _ in os.walk(self.root):
            # this process has written nothing here yet; holding the lease, it is the one writer
            gone = remove_leftovers(folder, own_pid_is_dead=True, sole_writer=self.lease is not None)
            removed += [str(Path(folder, name).relative_to(self.root)) for name in gone]
            subfolders[:] = [name for name in subfolders if name not in gone and name != "clients"]  # theirs
        if removed:
            _LOG.info("Removed what an interrupted run left half-written: %s", ", ".join(sorted(removed)))
        return removed

    def resume_hint(self) -> str:
        """How a user resumes this experiment: the command line, or em.resume for settings built in Python."""
        built_in_python = self.run_info().get("settings_object")
        if built_in_python:
            return f"em.resume({str(self.root)!r}, settings={built_in_python})"
        return f"{command_name()} train --resume {self.root}"

    def __repr__(self) -> str:
        info: RunRecord = self.run_info() if self.run_file.is_file() else {}
        return (f"<Experiment {self.root} ({info.get('status', 'no run.json')}, {info.get('epochs_completed', 0)} "
                f"epochs, best {info.get('monitored_loss_name')} {info.get('best_value')})>")

    def label(self) -> str:
        """A short, unique name for this run in tables (TensorBoard's HParams "Trial ID"): its start time, the hparams
        set for it, then day and session: '10:00:05 lr=0.1 (11-22 my_test)'. What tells runs apart comes first, as
        narrow columns cut the end; a second run of the same name started in the same second is '#1'."""
        info = self.run_info()
        started = info.get("started") or ""
        if len(started) < 19:
            return self.name
        repeat = [f"#{info['repeat']}"] if info.get("repeat") else []
        day = " ".join(part for part in (started[5:10], info.get("session_name")) if part)
        return " ".join([started[11:19], *repeat, *varied_hparams(info.get("hparam_overrides") or {}), f"({day})"])


def _copy_unless_gone(source: str, destination: str) -> str:
    """`shutil.copy2`, but a source removed or renamed away since its folder was listed is skipped."""
    try:
        return str(shutil.copy2(source, destination))
    except FileNotFoundError:
        if os.path.lexists(source):  # the destination's folder is what is missing: not the writer's doing
            raise
        return destination


def running_command() -> list[str]:
    """The command line of this process, for run.json."""
    program = Path(sys.argv[0]).name
    return (["python", "-m", "experiments_manager"] if program == "__main__.py" else [program]) + sys.argv[1:]
