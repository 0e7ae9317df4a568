"""`export`: a run's version converted to edge formats, each beside its parity report, in `RUN/edge/`.

For each target (`formats.EdgeTarget`), the version's SavedModel `serving_default` is converted (`convert.py`) into
a folder written whole under a temporary name carrying the pid (`.tmp-<n>-<pid>`), fsynced, then renamed to
`RUN/edge/<format>-<quantization>/` (an older export of the same target is replaced). The folder holds the model
file, `signature.json` (the SavedModel's and the exported model's inputs and outputs: names, dtypes, shapes, int8
scales), `labels.txt` (the version's own class names, `assets.extra/class_names.json` as the server reads them, else
the settings' `class_names`, when given) and the parity report (`parity.py`) of the SavedModel and the export.
`export --all` also writes the side-by-side table of every target to `RUN/edge/parity.md` + `.json`, once every
target is written; any export removes an older table before it replaces the first target folder, so the table never
describes folders replaced since. A target folder is written durably before the older one is moved aside. The run's
lease is held meanwhile, as `evaluate` holds it: a run being trained is refused in one line (exit 75); a killed
export's temporary folder is removed by the next one.

Example:

```python
rows = export_edge("experiments/digits/my_test_2026-11-23--10-00-00", [EdgeTarget("litert", "int8")])
print(markdown(rows))      # the SavedModel's row, then the export's
```
"""

import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from experiments_manager.edge.formats import (ALL_TARGETS, DEFAULT_CALIBRATION_BATCHES, DEFAULT_TIMING_SECONDS,
                                              EDGE_FOLDER, LABELS_FILE, PARITY_NAME, SIGNATURE_FILE, EdgeTarget,
                                              require_edge_extra)
from experiments_manager.edge.parity import ParityRow, write_report
from experiments_manager.run.experiment import Experiment, running_command
from experiments_manager.run import lifecycle
from experiments_manager.utils.checksums import write_manifest
from experiments_manager.utils.errors import UserInputError
from experiments_manager.utils.atomic import folder_replaced_atomically, hidden_for_removal, remove_leftovers
from experiments_manager.run.version_records import describe, read_class_names_file

if TYPE_CHECKING:
    from experiments_manager.edge.formats import Arrays
    from experiments_manager.edge.runtime import EdgeModel
    from experiments_manager.settings.loader import Settings

_LOG = logging.getLogger(__name__)


def export_edge(run: "str | Path | Experiment", targets: list[EdgeTarget], version: Optional[int] = None, allow_flex: bool = False,
                threads: Optional[int] = None, calibration_batches: Optional[int] = None,
                timing_seconds: float = DEFAULT_TIMING_SECONDS, settings: Optional["Settings"] = None,
                command: Optional[list[str]] = None, table: bool = False,
                accept_code_change: bool = False) -> list[ParityRow]:
    """Exports version `version` (None: the best) of the run `run` to each of `targets`; returns the parity rows
    (the SavedModel's first, then one per target).

    Args:
        run: the experiment folder (or its `Experiment`, opened: with `trust_code`, say).
        targets: the `EdgeTarget`s, in order.
        version: the version number (default None: the version holding the run's best epoch).
        allow_flex: LiteRT: export Flex ops instead of refusing them (default False).
        threads: the edge runtimes' threads (default None: every core).
        calibration_batches: int8: training batches to calibrate on (default None: `DEFAULT_CALIBRATION_BATCHES`).
        timing_seconds: each latency / throughput measure's duration (default `DEFAULT_TIMING_SECONDS`).
        settings: for a run whose settings were built in Python, the same settings again (default None: the run's
            own copies).
        command: the command line holding the run's lease meanwhile (default: this process').
        table: also write the side-by-side table to RUN/edge/parity.md + .json (default False; `export --all`).
        accept_code_change: export although a module of the run's code (its settings' input pipeline reads the
            calibration and parity data) changed since it trained (default False: refused in one line).

    Raises:
        UserInputError: no such run or version, the [edge] extra missing, Flex ops not allowed, a conversion that
            fails; LeaseHeld: a run being trained (exit 75).

    Example:

    ```python
    export_edge(run, list(ALL_TARGETS), version=2, table=True)
    ```
    """
    from experiments_manager.training.model import dtype_policy

    with dtype_policy(None):  # the caller's Keras policy is left as it is, whatever the settings file sets
        return _export_edge(run, targets, version, allow_flex, threads, calibration_batches, timing_seconds, settings,
                            command, table, accept_code_change)


def _export_edge(run: "str | Path | Experiment", targets: list[EdgeTarget], version: Optional[int], allow_flex: bool,
                 threads: Optional[int], calibration_batches: Optional[int], timing_seconds: float,
                 settings: Optional["Settings"], command: Optional[list[str]], table: bool,
                 accept_code_change: bool) -> list[ParityRow]:
    from experiments_manager.settings import Settings, load_experiment_settings
    from experiments_manager.run.version_records import chosen_version

    require_edge_extra()
    experiment = run if isinstance(run, Experiment) else Experiment.open(run)
    number, record, best = chosen_version(experiment, version, option="--version")
    experiment.refuse_code_changes("export", accept_code_change, "--accept-code-change")
    if not isinstance(settings, Settings):
        settings = load_experiment_settings(experiment, settings)
    with lifecycle.attempt(experiment, command or running_command(), console=False, records_ending=False):
        origin = _refuse_what_no_target_converts(experiment, settings, number, targets, allow_flex)
        base = experiment.root / EDGE_FOLDER
        base.mkdir(exist_ok=True)
        job: Optional[_Job] = None
        try:
            remove_leftovers(base, own_pid_is_dead=True, sole_writer=True)  # an export killed mid-write (lease held)
            job = _Job(experiment, settings, number, threads, timing_seconds)
            if any(target.calibrated for target in targets):
                job.calibrate(calibration_batches or DEFAULT_CALIBRATION_BATCHES)
            job.float32_copy_if_needed(base)
            rows = [job.reference_row()]
            _remove_table(base)  # it would outlive the folders replaced below (--all, killed, too): --all writes it
            for target in targets:
                rows.append(job.export(target, allow_flex, origin))
                _LOG.info("%s of %s: %s", target.folder_name, describe(number, record, best=best),
                          base / target.folder_name)
            if table:
                write_report(base, rows, title=job.title)
        finally:
            if job is not None:
                job.close()
            if not any(base.iterdir()):  # a first export that failed: no empty RUN/edge/ left behind
                base.rmdir()
    return rows


def _refuse_what_no_target_converts(experiment: Experiment, settings: "Settings", number: int,
                                    targets: list[EdgeTarget],
                                    allow_flex: bool) -> str:
    """Before anything is converted or written: a version that takes strings or looks values up in a TensorFlow
    lookup table (a text model's vectoriser) is refused for ONNX in one line naming the layers, and the way that
    works (LiteRT with Flex ops). Returns what LiteRT's refusal of Flex ops names as their origin ('' for none; the
    model is built to name its layers only when a refusal may need them)."""
    from experiments_manager.edge.preflight import layers_of, needs_of
    from experiments_manager.edge.runtime import SIGNATURE
    from experiments_manager.training.model import build_model, precision_policy

    folder = experiment.export_dir / str(number)
    needs = needs_of(folder)
    onnx = any(target.format == "onnx" for target in targets)
    if not needs or (allow_flex and not onnx):
        return ""
    with precision_policy(settings.runtime.mixed_precision):
        layers = ", ".join(layers_of(build_model(settings), needs))
    takes = f"takes strings ({', '.join(needs.string_inputs)}) and " if needs.string_inputs else ""
    if onnx:
        raise UserInputError(
            f"{folder} ({SIGNATURE}): --format onnx: {layers} {takes}runs {', '.join(needs.ops)}: expected ops "
            "ONNX's standard opset has (tf2onnx maps no string op or TensorFlow lookup table), got these: export "
            "--format litert --allow-flex-ops instead (string ops as Flex ops, for a runtime with the Flex "
            "delegate), or serve the model (docs/how-to/text-and-multi-input-models.md)")
    return layers


def _remove_table(base: Path) -> None:
    """Removes `export --all`'s RUN/edge/parity.md + .json (each renamed away first: gone at once for readers)."""
    for suffix in (".md", ".json"):
        path = base / f"{PARITY_NAME}{suffix}"
        if path.exists():
            hidden_for_removal(path).unlink()


class _Job:
    """What every target of one export shares: the version, its reference outputs, the data, the scorer."""

    def __init__(self, experiment: Experiment, settings: "Settings", number: int, threads: Optional[int],
                 timing_seconds: float) -> None:
        from experiments_manager.edge.data import validation_batches
        from experiments_manager.edge.parity import Scorer, outputs_of
        from experiments_manager.edge.runtime import SavedModelModel

        self.experiment, self.settings, self.number = experiment, settings, number
        self.threads, self.timing_seconds = threads, timing_seconds
        self.folder = experiment.export_dir / str(number)
        self.reference = SavedModelModel(self.folder)
        self.signature = self.reference.tensors()
        self.batches = validation_batches(settings, self.signature["inputs"], experiment.root)
        self.outputs = outputs_of(self.reference, self.batches)
        self.scorer = Scorer(settings)
        # the version's own class names (what the server reads), else the settings' (a version exported before them)
        self.class_names: Optional[Sequence[str]] = read_class_names_file(self.folder)
        if self.class_names is None:
            self.class_names = settings.data.class_names
        self.converted = self.folder  # what the converters read: the version, or its float32 copy
        self.calibration: "Optional[list[Arrays]]" = None
        self.reference_result: Optional[ParityRow] = None  # the SavedModel's row, once measured
        self.title = (f"{experiment.name}: version {number} ({self.folder}), against its SavedModel on the "
                      f"validation pipeline")

    def float32_copy_if_needed(self, base: Path) -> None:
        """A version that computes in float16 (mixed precision) is converted from its float32 copy
        (`training/float32_copy.py`), written to `base/.tmp-float32-<version>-<pid>` (removed by `close`; a killed
        export's by the next one)."""
        from experiments_manager.training.float32_copy import computes_in_half_precision_version, write_float32_copy

        if computes_in_half_precision_version(self.experiment, self.settings):
            self.converted = base / f".tmp-float32-{self.number}-{os.getpid()}"
            _LOG.info("Version %d computes in float16 (mixed precision): converted from its float32 weights",
                      self.number)
            write_float32_copy(self.experiment, self.settings, self.number, self.converted,
                               [tensor["name"] for tensor in self.signature["inputs"]])

    def close(self) -> None:
        """Removes the float32 copy, if one was written."""
        if self.converted != self.folder:
            shutil.rmtree(self.converted, ignore_errors=True)

    def calibrate(self, count: int) -> None:
        from experiments_manager.edge.data import calibration_batches

        self.calibration = calibration_batches(self.settings, self.signature["inputs"], count,
                                               run_folder=self.experiment.root)

    def reference_row(self) -> ParityRow:
        from experiments_manager.edge.parity import measure

        size = sum(path.stat().st_size for path in self.folder.rglob("*") if path.is_file())
        row = measure(self.reference, self.outputs, self.batches, self.scorer, self.number, "",
                      self.folder.relative_to(self.experiment.root).as_posix(), size,
                      self.settings.training.batch_size, timing_seconds=self.timing_seconds)
        self.reference_result = row
        return row

    def export(self, target: EdgeTarget, allow_flex: bool, origin: str = "") -> ParityRow:
        """Converts, measures and writes one target's folder whole; returns its row. `origin`: the layers a Flex
        op's refusal names (default '': none)."""
        from experiments_manager.edge.convert import convert_version
        from experiments_manager.edge.parity import measure
        from experiments_manager.edge.runtime import flex_ops, open_model

        base = self.experiment.root / EDGE_FOLDER
        final = base / target.folder_name
        with folder_replaced_atomically(base / f".tmp-{ALL_TARGETS.index(target)}-{os.getpid()}", final,
                                        replace_existing=True) as tmp:  # an older export: aside once this is durable
            tmp.mkdir()
            model_file = tmp / target.file_name
            converter = convert_version(self.converted, target, model_file, self.calibration, allow_flex, origin)
            relative = (final / target.file_name).relative_to(self.experiment.root).as_posix()
            flex = flex_ops(model_file)
            model: Optional[EdgeModel] = None
            if not flex:  # Flex ops asked for: this machine's plain LiteRT runtime has no Flex delegate to run them
                try:
                    model = open_model(model_file, self.threads)
                except UserInputError as error:  # named by the version and the target: the folder is removed
                    raise UserInputError(f"{self.folder} ({target.folder_name}): the converted model cannot be "
                                         f"run: {str(error).split(': ', 1)[-1]}") from None
            if model is None:
                row = ParityRow.unmeasured(target.format, target.quantize, relative, model_file.stat().st_size,
                                           self.number, self.settings.training.batch_size, flex, converter,
                                           "not run here: the plain LiteRT runtime has no Flex delegate")
            else:
                row = measure(model, self.outputs, self.batches, self.scorer, self.number, converter, relative,
                              model_file.stat().st_size, self.settings.training.batch_size, target.quantize, flex,
                              self.timing_seconds)
            (tmp / SIGNATURE_FILE).write_text(json.dumps(
                {"signature": "serving_default", "version": self.number, "format": target.format,
                 "quantize": target.quantize, "savedmodel": self.signature,
                 "model": None if model is None else model.tensors()}, indent=1) + "\n")
            if self.class_names is not None:
                (tmp / LABELS_FILE).write_text("".join(f"{name}\n" for name in self.class_names))
            assert self.reference_result is not None  # export_edge measures the reference row first
            write_report(tmp, [self.reference_result, row], title=self.title)
            write_manifest(tmp)  # checksums.sha256: `predict --edge` checks a copied folder before trusting it
        return row
