"""Served module -> versioned SavedModel, atomically, with the EMA weights swapped in.

Layout (TF Serving's, its names and rules in `served_layout.py`): `exported_models/<N>/saved_model.pb`. A version
is written to `exported_models/.tmp-<N>-<pid>/`, its signatures checked, then renamed to `<N>`, N one more than any
version this experiment ever exported. Readers (model servers) ignore dot-prefixed folders: no partial version.
One full `tf.saved_model.save` of the live model's served module makes the template of a run's versions: the
check's save of a new run's model (`dry_build.checked_training_model`), else the first version after a resume.
The versions share its graph and write only the variables (`template.py`), from numpy copies of their values
taken on the training thread at the epoch's end; in a training run a background thread writes them
(`background_export.py`). Every version also holds Keras' weights file of those EMA weights (`keras_weights.py`):
what a rebuilt model reads.
Long because numbering, writing, checking, retention and a resume's repair of the versions share one state, the
`Exporter`'s (fully typed).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Optional, Union, cast

from experiments_manager.utils.optimizers import inner_optimizer
from experiments_manager.export.build_configs import write_build_configs
from experiments_manager.export.keras_weights import version_weights_maker, write_weights_file
from experiments_manager.export.template import SavedModelTemplate
from experiments_manager.export.background_export import ExportFailed, ExportWorker
from experiments_manager.export.lean_save import lean_save
from experiments_manager.run.served_layout import (DAMAGED, DISCARDED, ModelSource, in_progress_folder_name,
                                               models_config_text, present_versions, set_aside_folder_name,
                                               set_aside_version)
from experiments_manager.export.served_module import served_module, version_signatures
from experiments_manager.utils.atomic import (folder_replaced_atomically, remove_leftovers, remove_tree_atomically,
                                              write_text_atomically)
from experiments_manager.utils.checksums import set_aside, verify_manifest, write_manifest
from experiments_manager.utils.environment_failures import both_storage_failures
from experiments_manager.run.names import now
from experiments_manager.run.version_records import (read_record_file, records_of, version_record,
                                                     write_class_names_file, write_record_file)

_UNKNOWN: Any = object()  # `requested` before a checkpoint's state is set: which versions came after it is not known
_LOG = logging.getLogger(__name__)

if TYPE_CHECKING:
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.record_writer import VersionProgress
    from experiments_manager.run.resume_state import ExportState, RequestedVersion
    from experiments_manager.run.version_records import VersionRecord
    from experiments_manager.run.weights_file import WeightsContent
    from experiments_manager.settings.loader import Settings


@contextlib.contextmanager
def ema_weights_swapped_in(model: Any, optimizer: Any) -> Iterator[None]:
    """Within the block, the model holds the optimizer's EMA (Polyak) weights.

    Uses the optimizer's public `finalize_variable_values`, then restores the
    exact training values. Does nothing when the optimizer keeps no EMA.

    Example:

    ```python
    with ema_weights_swapped_in(model, model.optimizer):
        predictions = model.predict(x)
    ```
    """
    if not getattr(inner_optimizer(optimizer), "use_ema", False):
        yield
        return
    variables = model.trainable_variables
    saved = [variable.numpy() for variable in variables]
    optimizer.finalize_variable_values(variables)
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)


class Exporter:
    """Exports served-model versions of a training model.

    A new run's check saved the served module once and made the `SavedModelTemplate` of its versions from that
    save (`checked`, `BuiltModel.template`): its graph, and the checkpoint key of each variable it saved. Without
    one (a resume in a new process, a model built by its first batch), the first version is a full
    `tf.saved_model.save` of the served module of the live model, its EMA weights swapped in, on the calling
    (training) thread, and makes the template. A version from the template takes, on the training thread, numpy
    copies of exactly those variables (the EMA values of the trainable ones, as the full save would) and writes them
    with the template's graph; with
    `in_background`, that write runs in a background thread (`background_export.py`) while training goes on: it
    touches no model and no Keras object. When the template cannot give back what a full save wrote (a served
    module holding lookup tables, say), every version is a full save on the training thread. Either way a
    version shows at once and complete (a dot-prefixed temporary folder renamed).

    Args:
        experiment: the `Experiment` (its `exported_models/` is the base path).
        settings: the `Settings` (served module, model name, retention).
        model: the Keras model being trained.
        in_background: write the versions after the first in a background thread (default False: `export`
            returns once the version is on disk). `wait`, `finish` and `close` wait for it.
        module: the model's served module, already made (default None: made at the first export).
        template: the `SavedModelTemplate` of a save of `module` made before training (the new run's check,
            `dry_build.checked_training_model`; default None): then every version, the first too, is written from
            it (in the background with `in_background`), and no version is a full save.

    Example:

    ```python
    exporter = Exporter(experiment, settings, model, in_background=True)
    version = exporter.export(epochs_completed=3)   # exported_models/<version>/, maybe being written
    exporter.finish()                                # on disk, and listed in run.json
    ```
    """

    def __init__(self, experiment: "Experiment", settings: "Settings", model: Any, in_background: bool = False,
                 module: Any = None, template: Optional[SavedModelTemplate] = None) -> None:
        self.experiment = experiment
        self.settings = settings
        self.model = model
        self.base = Path(experiment.export_dir)
        self._module: Any = module
        # None: none yet (the next version is a full save); False: every version is one
        self._template: Union[SavedModelTemplate, Literal[False], None] = template
        self._worker: Optional[ExportWorker] = ExportWorker() if in_background else None
        self._weights_file = version_weights_maker(model)  # each version's Keras weights file, its walk recorded
        self._leave_out_optimizer = True  # until a served module cannot be saved without it
        # the newest version asked for and the epochs completed then: a checkpoint's state, see export_missing
        self.requested: Optional[RequestedVersion] = _UNKNOWN
        # the version holding the run's best epoch: kept by the retention (checkpointed)
        self.best_version: Optional[int] = None
        # version -> its record (version_records.py), listed in run.json once it is on disk
        self._records: dict[int, VersionRecord] = {}
        # the versions this exporter put on disk (the retention may have removed them since)
        self._written: set[int] = set()
        self.base.mkdir(parents=True, exist_ok=True)
        write_models_config(experiment.models_config, settings.model_name, self.base)

    def versions(self) -> list[int]:
        """Version numbers present, oldest first."""
        return present_versions(self.base)

    def last_version(self) -> Optional[int]:
        """The newest version on disk or recorded in run.json (a version being written is not counted), or None."""
        recorded = self.experiment.run_info().get("last_exported_version") or 0
        # the numbers of versions moved aside are never used again
        aside = [version for version in map(set_aside_version, os.listdir(self.base)) if version is not None]
        return max([recorded, *self.versions(), *aside]) or None

    def progress(self) -> VersionProgress:
        """What run.json records of the exports: the versions present, the last one, and the record (epoch,
        monitored value) of each version once it is on disk.

        Example:

        ```python
        experiment.record.versions(exporter.progress())
        ```
        """
        present = self.versions()
        records = {str(version): record for version, record in records_of(self.experiment.run_info()).items()}
        records.update({str(version): record for version, record in self._records.items()
                        if version in present or version in self._written})
        for version in present:  # a version on disk whose record a kill kept out of run.json: the one beside it
            if str(version) not in records and (record := read_record_file(self.base / str(version))) is not None:
                records[str(version)] = record
        return {"exported_versions": present, "last_exported_version": self.last_version(),
                "version_records": dict(sorted(records.items(), key=lambda item: int(item[0])))}

    def served_parts(self) -> tuple[Any, Optional[SavedModelTemplate]]:
        """(the served module, the template of the versions), each None when not made (yet, or ever: full saves)."""
        return self._module, self._template or None

    def _served_module(self) -> Any:
        if self._module is None:
            self._module = served_module(self.settings, self.model)
        return self._module

    def export(self, epochs_completed: Optional[int] = None, value: Optional[float] = None, best: bool = False) -> int:
        """Exports the next version with the model's EMA weights as they are now; returns its number.

        Waits first for the version being written, if any (raising `ExportFailed` when it failed). The version is
        on disk when this returns, unless it is written in the background.

        Args:
            epochs_completed: the epochs trained into the weights (default None: not said), recorded in the
                checkpoint's state, in the version's record and in the message of a failure.
            value: the monitored value those weights reached (default None: not known), in the version's record.
            best: the version holds the run's best epoch so far (default False): the retention keeps it.

        Returns:
            the version's number.
        """
        self.wait()  # one version in flight at most: its number is taken
        version = (self.last_version() or 0) + 1
        full_save = not self._template  # of the live model, on this thread (the first one builds the template)
        if full_save:
            module = self._served_module()  # an error of the settings' code is raised here as it is, on this thread
        record = version_record(epochs_completed, self.settings.training.monitor, value)
        requested: RequestedVersion = {"version": version, "epochs_completed": epochs_completed,
                                       "value": record.get("value"), "best": bool(best)}
        self.requested = requested
        self._records[version] = record
        if best:
            self.best_version = version
        if full_save:
            self._write(version, functools.partial(self._save_live, module), record)
            return version
        with ema_weights_swapped_in(self.model, self.model.optimizer):
            # copies: training may move the weights on at once
            values = cast(SavedModelTemplate, self._template).snapshot()  # not a full save: the template is read
            keras_weights = self._weights_file.copy()  # the version's Keras weights file: its values copied
        write = functools.partial(self._write, version,
                                  functools.partial(_from_template, cast(SavedModelTemplate, self._template), values,
                                                    keras_weights),
                                  record)
        if self._worker is None:
            write()
        else:
            done = "" if epochs_completed is None else f" (after epoch {epochs_completed})"
            self._worker.submit(write, f"version {version}{done}")
        return version

    def wait(self) -> None:
        """Waits for the version being written, if any.

        Raises:
            ExportFailed: the background write of that version failed.
        """
        if self._worker is not None:
            self._worker.wait()

    def finish(self) -> None:
        """Waits for the version being written (raising `ExportFailed` if it failed), then lists the versions
        in run.json: what a run does before it reports."""
        self.wait()
        self.experiment.record.versions(self.progress())

    def close(self, ending: Optional[BaseException] = None) -> None:
        """Waits for the version being written and lists the versions in run.json; an export's failure is
        logged, not raised (the run already ended otherwise: failed, or stopped by a signal), unless it and
        `ending` (the error ending the run, default None) are both the storage's: the run's one line says it."""
        try:
            self.wait()
        except ExportFailed as failure:
            if not both_storage_failures(failure, ending):
                _LOG.error("%s", failure)
        self.experiment.record.versions(self.progress())

    def get_state(self) -> ExportState:
        """The version last asked for, for the checkpoint (see `export_missing`)."""
        return {"requested": None if self.requested is _UNKNOWN else self.requested, "best_version": self.best_version}

    def set_state(self, state: ExportState) -> None:
        """Takes back the state a checkpoint saved (from `get_state`).

        Args:
            state: `{"requested": {"version": N, "epochs_completed": E, "value": V, "best": B}, "best_version": M}`,
                or `{"requested": None}` (older checkpoints lack value, best and best_version).

        Example:

        ```python
        exporter.set_state(restored["callbacks"]["exports"])
        exporter.export_missing(restored["epochs_completed"])
        ```
        """
        self.requested = state.get("requested")
        self.best_version = state.get("best_version")

    def export_missing(self, epochs_completed: int) -> Optional[int]:
        """After a resume from the checkpoint of epoch `epochs_completed`: exports again the version that epoch
        asked for, if the run stopped before it was on disk (a kill while it was written, or its write failed);
        the restored model holds that epoch's values. The version is on disk when this returns.

        Args:
            epochs_completed: the epochs the restored checkpoint holds.

        Returns:
            the version exported, or None.
        """
        requested: RequestedVersion = self.requested if isinstance(self.requested, dict) else {}
        if requested.get("epochs_completed") != epochs_completed:
            return None
        set_aside_as_damaged = (self.base / set_aside_folder_name(DAMAGED, requested["version"])).exists()
        if requested["version"] <= (self.last_version() or 0) and not set_aside_as_damaged:
            return None  # on disk (a damaged one was set aside: the restored model holds its values, exported anew)
        _LOG.info("Exporting again version %d (after epoch %d): the run stopped while it was written",
                  requested["version"], epochs_completed)
        version = self.export(epochs_completed, value=requested.get("value"), best=requested.get("best", False))
        self.wait()
        return version

    def _save_live(self, module: Any, folder: Path) -> None:
        """A full save of `module`, the served module of the live model, with its EMA weights (on the training
        thread); the first one is kept as the template of the next versions."""
        signature = module.served_model.get_concrete_function()
        signatures = dict.fromkeys(self._signature_names(), signature)
        with ema_weights_swapped_in(self.model, self.model.optimizer):
            self._save(module, folder, signatures)
            if self._template is None:  # the variables still hold the values saved: the template's check
                self._template = SavedModelTemplate.read(folder, module) or False
            write_weights_file(self.model, folder)  # after the template read: not a file the versions share

    def _save(self, module: Any, folder: Path, signatures: dict[str, Any]) -> None:
        """`tf.saved_model.save` without the model's optimizer; with it when the served module needs it (logged once,
        and every later full save keeps it). Another failure is raised as the save with the optimizer raises it."""
        import tensorflow as tf

        if self._leave_out_optimizer:
            try:
                with lean_save(self.model):
                    tf.saved_model.save(module, str(folder), signatures=signatures)
                return
            except Exception as error:  # noqa: BLE001 - tried again below, with the optimizer
                without = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                shutil.rmtree(folder, ignore_errors=True)  # the temporary folder: no reader looks in it
        tf.saved_model.save(module, str(folder), signatures=signatures)
        if self._leave_out_optimizer:
            self._leave_out_optimizer = False
            _LOG.info("Exports hold the optimizer too: the served module cannot be saved without it (%s)", without)

    def _signature_names(self) -> tuple[str, str]:
        return version_signatures(self.settings)

    def _write(self, version: int, write_into: Callable[[Path], object], record: "VersionRecord") -> None:
        """Writes version `version` with `write_into(folder)` and its `record`, atomically; checks it; applies the
        retention."""
        self.experiment.check_writer()  # still the experiment's one writer (its lease)
        # of an export a killed run left half-written (holding the experiment's lease, every other pid's is)
        remove_leftovers(self.base, sole_writer=self.experiment.lease is not None)
        with folder_replaced_atomically(self.base / in_progress_folder_name(version), self.base / str(version),
                                        before_commit=self.experiment.check_writer) as tmp:  # again once durable
            write_into(tmp)
            record["at"] = now()  # when it was written (run.json lists the same record once it is on disk)
            write_record_file(tmp, record)  # after the template read the first version: not a file they share
            write_class_names_file(tmp, self.settings.data.class_names)  # the labels served in the metadata
            write_build_configs(tmp, self.model)  # for the blocks only training builds, in a rebuilt model
            check_signatures(tmp, self._signature_names())
            write_manifest(tmp)  # checked by a resume and by the server before they trust the version
        self._written.add(version)  # its record is kept in run.json even when the retention removes it before
        self._apply_retention()     # an epoch's end lists the versions (a background write finishing late)

    def at_resume(self, epochs_restored: Optional[int]) -> None:
        """At a resume (after `set_state`): from a checkpoint of `epochs_restored` epochs, the versions damaged or
        exported after it set aside and the one it asked for that a kill lost exported again (the restored model holds
        its values); without a usable checkpoint (None), every version set aside, the run starting from its first
        epoch. Nothing for a new run (no versions).

        Example:

        ```python
        exporter.at_resume(restored["epochs_completed"] if restored else None)
        ```
        """
        if epochs_restored is None:
            if self.versions():
                self.set_aside_at_resume(from_the_start=True)
            return
        self.set_aside_at_resume()
        self.export_missing(epochs_restored)

    def set_aside_at_resume(self, from_the_start: bool = False) -> list[int]:
        """At a resume (after `set_state`): moves each version whose files differ from its checksums to
        `exported_models/damaged-<N>`, and each exported after the restored checkpoint to `discarded-<N>` (one
        warning line each; servers skip them; numbers go on past them); returns their numbers.

        Args:
            from_the_start: the resume found no usable checkpoint and trains from the first epoch: every version
                is the discarded attempt's (default False).
        """
        if from_the_start:
            self.requested = None
        problems = {version: verify_manifest(self.base / str(version)) for version in self.versions()}
        damaged = [version for version, problem in problems.items() if problem is not None]
        for version in damaged:
            set_aside(self.base / str(version), set_aside_folder_name(DAMAGED, version),
                      f"damaged ({problems[version]})")
        later = [] if self.requested is _UNKNOWN else [
            version for version in self.versions() if version > (self.requested or {}).get("version", 0)]
        why = ("exported by an attempt whose checkpoints are gone (this resume trains from the first epoch)"
               if from_the_start else
               "exported after the checkpoint this resume continues from (its epoch is trained again)")
        for version in later:  # its epoch is trained again
            set_aside(self.base / str(version), set_aside_folder_name(DISCARDED, version), why)
        if damaged or later:
            self.experiment.record.versions(self.progress())
        return damaged + later

    def _apply_retention(self) -> None:
        """Removes all but the newest `versions_to_keep` versions, and the one holding the best epoch."""
        for version in self.versions()[: -self.settings.export.versions_to_keep]:
            if version != self.best_version:
                remove_tree_atomically(self.base / str(version))


def _from_template(template: SavedModelTemplate, values: dict[str, Any], keras_weights: WeightsContent,
                   folder: Path) -> None:
    """A version written from the first one's graph: its variables' values, and its Keras weights file's bytes."""
    template.write(folder, values)
    write_weights_file(None, folder, keras_weights)


def check_signatures(saved_model_dir: "str | Path", expected: Iterable[str]) -> None:
    """Raises when the SavedModel at `saved_model_dir` lacks an expected signature."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    found = set(proto.meta_graphs[0].signature_def)
    missing = [name for name in expected if name not in found]
    if missing:
        raise RuntimeError(f"{saved_model_dir}: signatures {missing} missing after export (found {sorted(found)})")


def write_models_config(path: "str | Path", model_name: str, base_path: "str | Path", num_versions: int = 1) -> None:
    """Writes a TF Serving `models.config` text proto serving `base_path`."""
    source = ModelSource(model_name, Path(base_path), num_versions=num_versions)
    write_text_atomically(path, models_config_text([source]))
