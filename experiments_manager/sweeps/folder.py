"""The sweep folder: `<workingFolder>/<session_name>_sweep_<YYYY-mm-dd--HH-MM-SS>/` (or `_sweep_<NAME>` with `--join`).

```
sweep.json            what was swept and how (settings, space, algo, seed, max evals), status, best trial
sweep_settings.py     copy of the settings file as it was when the sweep started (or as a resume accepted it):
                      what a resumed sweep's new trials execute, as the user's file
trials.pickle         hyperopt Trials of the finished trials, rewritten after each one (pickle.load gives it back)
results.csv           one row per trial: hparams, status, best value and epoch, seconds, experiment folder
loss_vs_hparams.png   each trial's best value against each swept hparam
trials/trial-NNNN.json  each trial's record (point, worker, experiment folder, status, result; `journal.py`),
                      .log its output, .lock the claim of the worker that trains it (an older engine's sweep:
                      trial-<hash>)
sweep.lock            the short lock of the workers' asks and tells (`store.py`), present for a moment
choices/NNNN.json     each change of what is swept and how after the sweep began (a resume's max evals, accepted
                      code...), created once and never rewritten: sweep.json's choices are the newest of them
<session>_<stamp>_<swept hparams>/   each trial's experiment: an ordinary experiment folder
```
With the trials inside, `tensorboard --logdir <sweep folder>` compares them alone, and
`tensorboard --logdir <workingFolder>` compares them with every other run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

from experiments_manager.run.record import Status
from experiments_manager.utils.atomic import copy_atomically, fsync_folder, write_json_atomically
from experiments_manager.utils.code_trust import refuse_foreign_code
from experiments_manager.utils.errors import UserInputError
from experiments_manager.run.attempts import file_sha256
from experiments_manager.run.experiment import SWEEP_SPEC_NAME
from experiments_manager.run.record import STATUSES
from experiments_manager.run.names import folder_stamp, make_unique_dir, now
from experiments_manager.settings.script import ScriptSource, replace_copy
from experiments_manager.sweeps.spec_writer import SweepRecordWriter, SweepSpec

if TYPE_CHECKING:
    from experiments_manager.settings.loader import Settings
    from experiments_manager.utils.atomic import PathLike

LEFTOVER_AGE_SECONDS = 3600  # a named sweep folder half built this long ago was left by a crash
SWEEP_STATUSES = STATUSES  # a sweep stands as a run does (`run.record.Status`)
# what the workers derive and write (sweep.json's progress); every other field is a choice of the sweep's commands
PROGRESS_FIELDS = frozenset({"status", "ended", "exit_code", "trials_done", "best", "pid", "device_hours",
                             "device_hours_full", "trials", "reason"})
CHOICES_VERSION = "choices_version"  # sweep.json: the number of the newest choices/NNNN.json it holds (absent: none)


class SweepFolder:
    """One sweep's folder and its sweep.json.

    Args:
        root: the sweep folder.

    Example:

    ```python
    sweep = SweepFolder.open("experiments/examples/curve_fitting/my_test_sweep_2026-11-21--10-00-00")
    sweep.spec()["status"]
    ```
    """

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root)

    @property
    def spec_file(self) -> Path:
        return self.root / SWEEP_SPEC_NAME

    @property
    def settings_copy(self) -> Path:
        return self.root / "sweep_settings.py"

    @property
    def trials_file(self) -> Path:
        return self.root / "trials.pickle"

    @property
    def results_csv(self) -> Path:
        return self.root / "results.csv"

    @property
    def plot_png(self) -> Path:
        return self.root / "loss_vs_hparams.png"

    @property
    def trials_dir(self) -> Path:
        return self.root / "trials"

    @classmethod
    def create(cls, settings: Settings, spec: SweepSpec, name: Optional[str] = None) -> tuple[SweepFolder, bool]:
        """A sweep folder in the settings' workingFolder with sweep.json and a copy of the settings: dated, or
        `<session_name>_sweep_<name>` when `name` is given (the tasks of a job array agree on it). A named folder
        appears whole (built under a temporary name, then renamed), so a task that finds it finds its sweep.json.

        Returns:
            (the `SweepFolder`, True) when this call created it; (the existing one, False) when another process
            had created the named folder first.
        """
        parent = Path(settings.experiment.working_folder)
        parent.mkdir(parents=True, exist_ok=True)
        session = settings.experiment.session_name
        content: SweepSpec = {**spec, "settings_sha256": file_sha256(settings.path),
                              "model_sha256": file_sha256(settings.model_file),
                              "created": now(), "status": Status.RUNNING.value, "trials_done": 0, "best": None}
        if name is None:
            sweep = cls(make_unique_dir(parent, f"{session}_sweep_{folder_stamp()}".lstrip("_")))
            sweep._fill(settings, content)
            return sweep, True
        final = cls.named(settings, name).root
        if (final / SWEEP_SPEC_NAME).is_file():
            return cls(final), False
        for leftover in parent.glob(f".{final.name}.creating-*"):  # a creator that crashed (building takes ms)
            with contextlib.suppress(OSError):
                if time.time() - leftover.stat().st_mtime > LEFTOVER_AGE_SECONDS:
                    shutil.rmtree(leftover, ignore_errors=True)
        building = cls(parent / f".{final.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        building.root.mkdir()
        try:
            building._fill(settings, content)
            os.rename(building.root, final)  # fails when another task's folder is there: join that one
        except OSError as error:
            shutil.rmtree(building.root, ignore_errors=True)
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not (final / SWEEP_SPEC_NAME).is_file():
                raise
            return cls(final), False
        fsync_folder(parent)
        return cls(final), True

    @classmethod
    def named(cls, settings: Settings, name: Optional[str]) -> SweepFolder:
        """The sweep folder `--join NAME` names: `<workingFolder>/<session_name>_sweep_<name>`."""
        return cls(Path(settings.experiment.working_folder) / f"{settings.experiment.session_name}_sweep_{name}".lstrip("_"))

    def exists(self) -> bool:
        return self.spec_file.is_file()

    def _fill(self, settings: Settings, content: SweepSpec) -> None:
        copy_atomically(settings.path, self.settings_copy)
        self.write_spec(content)

    @classmethod
    def open(cls, root: PathLike) -> SweepFolder:
        sweep = cls(root)
        if not sweep.spec_file.is_file():
            raise UserInputError(f"{root}: not a sweep folder (no {SWEEP_SPEC_NAME})")
        return sweep

    @property
    def choices_dir(self) -> Path:
        return self.root / "choices"

    def refuse_foreign_code(self, spec: SweepSpec, trust_code: bool) -> None:
        """Refuses, in one line, to resume a sweep whose folder, sweep.json or code (its settings copy, the settings
        and model files sweep.json names: each trial runs them) another user owns (`utils/code_trust.py`), unless
        `trust_code` (`--trust-code`); the trials it resumes then trust its decision (without it, each trial's
        folder is checked as it resumes).

        Raises:
            UserInputError: another user owns one of them (exit 2).
        """
        named = [Path(path) for path in (spec.get("settings_file"), spec.get("model_file")) if isinstance(path, str)]
        refuse_foreign_code(self.root, [self.spec_file, self.settings_copy, *named], trust_code)

    def settings_source(self, spec: SweepSpec, accepted_now: bool = False) -> ScriptSource:
        """The settings a resumed sweep's new trials train from: its copy (`sweep_settings.py`), executed as the
        user's file sweep.json names (`__file__`, its folder importable: `settings/script.py`), once the copy is
        checked against the SHA-256 sweep.json records for it. No settings path read from sweep.json is executed but
        one a resume accepted (`accepted_now`: `--accept-code-change`, the user's file the SHA-256 `spec` now
        records), until `take_accepted_settings` makes it the copy.

        Raises:
            UserInputError: the copy is missing, or is not the code sweep.json records (changed in the folder).
        """
        original = spec.get("settings_file")
        expected = (spec.get("code") or {}).get(original or "") or spec.get("settings_sha256")
        found = file_sha256(self.settings_copy)
        if found is None:
            raise UserInputError(f"{self.settings_copy}: not found (the sweep's copy of its settings, which its new "
                                 f"trials train from); copy {original} there to resume the sweep")
        if expected is not None and found != expected and accepted_now and file_sha256(original or "") == expected:
            accepted = Path(cast(str, original)).resolve()
            return ScriptSource(runs=accepted, script=accepted)
        if expected is not None and found != expected:
            raise UserInputError(f"{self.settings_copy}: expected the settings sweep.json records (SHA-256 "
                                 f"{expected[:12]}), got {found[:12]}: changed inside the sweep folder; put it back "
                                 "(each trial's folder holds the copy it trained with)")
        return ScriptSource.of(self.settings_copy.resolve(), original)  # absolute: trial hosts run elsewhere

    def take_accepted_settings(self, spec: SweepSpec) -> Optional[str]:
        """Puts the user's settings file in place of the sweep's copy (durably) once a resume accepted a change
        of it (`--accept-code-change`) and sweep.json records its new SHA-256 (`code`): later resumes run it.

        Returns:
            'sweep_settings.py (replaced by /home/me/proj/settings.py)', or None when nothing was replaced.
        """
        original = spec.get("settings_file")
        accepted = (spec.get("code") or {}).get(original or "")
        if original is None or accepted is None or file_sha256(original) != accepted:
            return None
        return replace_copy(self.settings_copy, Path(original))

    def spec(self) -> SweepSpec:
        """sweep.json, with the newest choices (`choices/NNNN.json`) over what it holds: a read of sweep.json that
        the file system served stale (another node replaced it a moment ago) still gives the latest choices."""
        try:
            spec: dict[str, Any] = json.loads(self.spec_file.read_text())
        except (OSError, ValueError) as error:
            raise UserInputError(f"{self.spec_file}: expected a JSON object: {error}") from None
        newest = self._newest_choices(spec.get(CHOICES_VERSION) or 0)
        if newest is not None:
            spec.update(newest[1], **{CHOICES_VERSION: newest[0]})
        return cast(SweepSpec, spec)

    @property
    def record(self) -> SweepRecordWriter:
        """sweep.json's named transitions (`spec_writer.SweepRecordWriter`): how the package changes it."""
        return SweepRecordWriter(self)

    def write_spec(self, spec: SweepSpec) -> None:
        write_json_atomically(self.spec_file, spec)

    def update_spec(self, **fields: Any) -> SweepSpec:
        """Rewrites sweep.json with `fields` (under the sweep's lock; the package calls it through `record`).
        Progress fields (`PROGRESS_FIELDS`) go into it alone; a changed choice is first recorded as a new
        `choices/NNNN.json` (created exclusively, never rewritten), so that no later rewrite of sweep.json from a
        stale read can undo it.

        Args:
            **fields: sweep.json's fields to set, e.g. `status="finished"` or `max_evals=40`.
        """
        if "status" in fields and fields["status"] not in SWEEP_STATUSES:
            raise ValueError(f"unknown sweep status {fields['status']!r}")
        spec = cast(dict[str, Any], self.spec())  # updated field by field, by name
        changed = {name: value for name, value in fields.items()
                   if name not in PROGRESS_FIELDS and name != CHOICES_VERSION and spec.get(name) != value}
        if changed:
            number, choices = self._record_choices(spec, changed)
            spec.update(choices, **{CHOICES_VERSION: number})
        spec.update({name: value for name, value in fields.items() if name in PROGRESS_FIELDS})
        self.write_spec(cast(SweepSpec, spec))
        return cast(SweepSpec, spec)

    def _newest_choices(self, known: int) -> Optional[tuple[int, dict[str, Any]]]:
        """(number, choices) of the newest `choices/NNNN.json` numbered `known` or more (a new name is seen at once
        where a replaced file's content may be seen late), or None when there is none."""
        newest: Optional[tuple[int, dict[str, Any]]] = None
        number = max(known, 1)
        while True:
            try:
                newest = (number, json.loads((self.choices_dir / f"{number:04d}.json").read_text()))
            except FileNotFoundError:
                if number > known:
                    return newest
            except (OSError, ValueError) as error:
                raise UserInputError(f"{self.choices_dir / f'{number:04d}.json'}: expected a JSON object: "
                                     f"{error}") from None
            number += 1

    def _record_choices(self, spec: dict[str, Any], changed: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Creates the next `choices/NNNN.json`: the newest choices with `changed` over them. Returns (its number,
        its choices)."""
        from experiments_manager.utils.exclusive_create import create_whole

        if not self.choices_dir.is_dir():
            self.choices_dir.mkdir(exist_ok=True)
            fsync_folder(self.root)
        number = spec.get(CHOICES_VERSION) or 0
        choices = {name: value for name, value in spec.items()
                   if name not in PROGRESS_FIELDS and name != CHOICES_VERSION}
        look_from = number + 1
        while True:  # the number grows at each turn
            newer = self._newest_choices(look_from)
            if newer is not None:  # recorded since our read (each file holds every choice): ours go over them
                number, choices = newer
            if create_whole(self.choices_dir / f"{number + 1:04d}.json", {**choices, **changed}):
                return number + 1, {**choices, **changed}
            number += 1  # taken meanwhile: read on the next turn, if the file system shows it yet
            look_from = number
