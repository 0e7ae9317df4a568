"""What differs between two runs (`experiments-manager diff RUN_A RUN_B`), as unified diffs a researcher reads in a
terminal: one section per aspect (hparams, the settings and model files' copies, the stack, the seed, the outcome,
the newest evaluation); a section without a difference is one line saying "same"."""

import dataclasses
import difflib
from pathlib import Path
from typing import Any, Mapping, Optional, cast

from experiments_manager.run.experiment import Experiment
from experiments_manager.run.record import RunRecord, Status
from experiments_manager.run.attempts import is_engine_file, recorded_code
from experiments_manager.run.evaluations import newest_evaluation
from experiments_manager.utils.errors import UserInputError
from experiments_manager.run.version_records import records_of

_COLOURS = {"-": "\033[31m", "+": "\033[32m", "@": "\033[36m", "title": "\033[1m"}
_RESET = "\033[0m"


@dataclasses.dataclass
class Section:
    """One aspect of two runs: its title, each run's lines and the names the diff gives them."""

    title: str
    lines_a: list[str]
    lines_b: list[str]
    name_a: str
    name_b: str

    @property
    def same(self) -> bool:
        return self.lines_a == self.lines_b

    def diff(self) -> list[str]:
        """The unified diff's lines (3 lines of context)."""
        return list(difflib.unified_diff(self.lines_a, self.lines_b, f"a/{self.name_a}", f"b/{self.name_b}",
                                         lineterm=""))


@dataclasses.dataclass
class RunDiff:
    """The sections of two runs, in the order shown."""

    run_a: Path
    run_b: Path
    sections: list[Section]

    @property
    def differ(self) -> bool:
        return any(not section.same for section in self.sections)

    def render(self, colour: bool = False) -> str:
        """The text `diff` prints; `colour`: ANSI colours for a terminal (default False)."""
        paint = (lambda kind, text: f"{_COLOURS[kind]}{text}{_RESET}") if colour else (lambda kind, text: text)
        lines = [f"a: {self.run_a}", f"b: {self.run_b}"]
        for section in self.sections:
            if section.same:
                lines.append(f"{section.title}: same" + ("" if section.lines_a else " (none)"))
                continue
            lines.append(paint("title", f"{section.title}:"))
            for line in section.diff():
                kind = "@" if line.startswith("@@") else line[:1]
                lines.append(paint(kind, line) if kind in "-+@" and not line.startswith(("---", "+++")) else line)
        return "\n".join(lines)


def diff_runs(run_a: str | Path, run_b: str | Path) -> RunDiff:
    """The differences between two runs' folders.

    Args:
        run_a: an experiment folder.
        run_b: another one.

    Returns:
        a `RunDiff`; its `render()` is what `experiments-manager diff` prints.

    Raises:
        UserInputError: a path that is no experiment folder (one line).

    Example:

    ```python
    from experiments_manager.runs.diff import diff_runs

    print(diff_runs("experiments/a_run", "experiments/another_run").render())
    ```
    """
    a, b = Experiment.open(run_a), Experiment.open(run_b)
    info_a, info_b = _info(a), _info(b)
    model_a, model_b = _model_copy(a, info_a), _model_copy(b, info_b)
    pairs = [
        ("hparams", _hparam_lines(info_a), _hparam_lines(info_b), "hparams", "hparams"),
        ("settings file", _text(a.settings_copy), _text(b.settings_copy),
         _file_label(a.settings_copy.name, info_a.get("settings_file")),
         _file_label(b.settings_copy.name, info_b.get("settings_file"))),
        ("model file", _text(model_a), _text(model_b), model_a.name if model_a else "model file (none)",
         model_b.name if model_b else "model file (none)"),
        ("stack", _stack_lines(info_a), _stack_lines(info_b), "stack", "stack"),
        ("seed", _lines({"seed": info_a.get("seed")}), _lines({"seed": info_b.get("seed")}), "seed", "seed"),
        ("outcome", _outcome_lines(info_a), _outcome_lines(info_b), "outcome", "outcome"),
        ("modules they import", _module_lines(info_a), _module_lines(info_b), "modules", "modules"),
        ("newest evaluation", _evaluation_lines(a, info_a), _evaluation_lines(b, info_b), "evaluation", "evaluation"),
    ]
    return RunDiff(Path(run_a), Path(run_b), [Section(*pair) for pair in pairs])


def _info(experiment: Experiment) -> RunRecord:
    info = experiment.run_info()
    if not isinstance(info, dict):
        raise UserInputError(f"{experiment.run_file}: expected a JSON object, got {type(info).__name__}")
    return info


def _model_copy(experiment: Experiment, info: Mapping[str, Any]) -> Optional[Path]:
    name = info.get("model_name")
    path = experiment.root / f"{name}.py" if name else None
    return path if path is not None and path.is_file() else None


def _text(path: Optional[Path]) -> list[str]:
    if path is None:
        return []
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError as error:
        return [f"(unreadable: {error.strerror})"]


def _file_label(copy_name: str, original: Optional[str]) -> str:
    return f"{copy_name} (copy of {original})" if original else copy_name


def _lines(values: Mapping[str, object]) -> list[str]:
    """`name = value` lines, values as Python writes them (a status as the string run.json holds); None left out."""
    return [f"{name} = {value.value if isinstance(value, Status) else value!r}" for name, value in values.items()
            if value is not None]


def _dict(info: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = info.get(key)
    return value if isinstance(value, dict) else {}


def _hparam_lines(info: Mapping[str, Any]) -> list[str]:
    """Every hparam, sorted by name; those set on the command line (`--hparam`) marked."""
    overrides = _dict(info, "hparam_overrides")
    hparams = {**_dict(info, "hparams"), **overrides}
    return [f"{name} = {hparams[name]!r}" + ("   # --hparam" if name in overrides else "") for name in sorted(hparams)]


def _stack_lines(info: Mapping[str, Any]) -> list[str]:
    """The versions run.json recorded (python, tensorflow, keras, this package), the code's commit, where it ran."""
    return _lines({**_dict(info, "versions"), "git commit": info.get("git_commit"), "host": info.get("host"),
                   "devices": info.get("devices"), "xla": info.get("xla"),
                   "mixed precision": info.get("mixed_precision")})


def _outcome_lines(info: Mapping[str, Any]) -> list[str]:
    return _lines({"status": info.get("status"), "error": info.get("error"),
                   "epochs completed": info.get("epochs_completed"), "epochs planned": info.get("nbEpoch"),
                   "monitor": info.get("monitored_loss_name"), "monitor mode": info.get("monitor_mode"),
                   "best value": info.get("best_value"), "best epoch": info.get("best_epoch"),
                   "exported versions": info.get("exported_versions")}) + _lineage_lines(info) + [
        f"version {version}: epoch {record.get('epoch')}, {record.get('monitor')} = {record.get('value')!r}"
        for version, record in sorted(records_of(info).items())]


def _lineage_lines(info: Mapping[str, Any]) -> list[str]:
    """What a fine-tuned run started from (run.json's `fine_tuned_from`): the run and version, how many weights of
    its model were loaded, what each top-level block took, each weight left as the model made it."""
    lineage = _dict(info, "fine_tuned_from")
    if not lineage:
        return []
    lines = [f"fine-tuned from = {lineage.get('run')} version {lineage.get('version')}"]
    if "weights_loaded" in lineage:
        lines.append(f"fine-tuned weights loaded = {lineage.get('weights_loaded')} of {lineage.get('weights')}")
    blocks = lineage.get("blocks")
    for name, counts in (blocks.items() if isinstance(blocks, dict) else ()):
        took = "/".join(str(count) for count in counts) if isinstance(counts, list) else repr(counts)
        lines.append(f"fine-tuned block {name} = {took}")
    skipped = lineage.get("skipped")
    lines += [f"fine-tuned left as built = {reason}" for reason in (skipped if isinstance(skipped, list) else ())]
    return lines


def _module_lines(info: Mapping[str, Any]) -> list[str]:
    """The user's modules the run's last attempt imported besides its settings and model copies (a helper module),
    each by its file name and SHA-256 as recorded: an edit between two runs shows as a changed line."""
    return [f"{Path(path).name}: sha256 {str(digest)[:12]}" for path, digest in sorted(recorded_code(info).items())
            if Path(path).is_absolute() and not is_engine_file(path)]


def _evaluation_lines(experiment: Experiment, info: Mapping[str, Any]) -> list[str]:
    evaluation = newest_evaluation(experiment.root, info)
    if evaluation is None:
        return []
    metrics = cast(dict[str, Any], evaluation.get("metrics") if isinstance(evaluation.get("metrics"), dict) else {})
    return _lines({"version": evaluation.get("version"), "data": evaluation.get("data")}) + _lines(
        {f"metric {name}": value for name, value in sorted(metrics.items())})
