"""What `experiments-manager list` prints for the runs and sweeps below a folder (`run.discovery` finds them): one
row per run, filtered (`--status`, `--where`), sorted (`--sort`), as a table, CSV or JSON.

A row's columns are keys: the built-in ones (`COLUMN_KEYS`), each hparam by its name, each metric of the run's
last epoch (run.json's `last_epoch_logs`: `val_loss`, `loss`, ...) and `test_<name>` for each metric of its newest
evaluation (`run/evaluations.py`: the run's `evaluations/` folder, read once a row). Sorting and filtering read the
typed value (a number compares as a number); the table shows it as text (4 significant digits).

Long because a listing is one piece: the rows and their keys, the filters, the order and the
three formats share the rows' one definition of each column.
"""

import csv
import functools
import io
import json
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, Set, Tuple, TypeGuard, cast

from experiments_manager.run.attempts import device_hours
from experiments_manager.run.discovery import folders_below, read_run_info, shown_status
from experiments_manager.run.evaluations import EvaluationEntry, newest_evaluation
from experiments_manager.run.experiment import RUN_FILE_NAME, SWEEP_SPEC_NAME, Experiment
from experiments_manager.run.record import STATUSES
from experiments_manager.run.liveness import RUNNING, WRITER_STATES, writer_state
from experiments_manager.run.record import RunRecord
from experiments_manager.settings.overrides import literal_or_text
from experiments_manager.sweeps.folder import SweepFolder
from experiments_manager.utils.atomic import PathLike
from experiments_manager.utils.errors import UserInputError

COLUMNS = ("experiment", "status", "epoch", "best", "best_epoch", "versions", "device_hours")
WIDE_COLUMNS = COLUMNS + ("hparams",)
SWEEP_COLUMNS = ("sweep", "status", "trials", "best", "best_experiment")
# the built-in keys of a run's row (sorting and filtering accept them, and every hparam, metric and test_ name)
COLUMN_KEYS = COLUMNS + ("best_value", "monitor", "started", "ended", "path", "hparams")
TEST_PREFIX = "test_"  # the columns of the newest evaluation's metrics

_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|!=|==|=|<|>)\s*(.*?)\s*$")


class RunRow:
    """One run of a listing: its run.json read once; `value(key)` typed, `row[key]` as the table shows it.

    Args:
        experiment: the run's `Experiment`.
        relative: its path as listed (relative to the listed folder).
        info: its run.json (or `read_run_info`'s stand-in).
    """

    def __init__(self, experiment: Experiment, relative: str, info: RunRecord) -> None:
        self.experiment = experiment
        self.relative = relative
        self.info = info
        status = shown_status(info)  # `running` is checked against the writer's lease: `dead`, `stalled?`
        self.status: Optional[str] = writer_state(experiment.root, info) if status == RUNNING else status

    def _dict(self, name: str) -> Dict[str, Any]:
        value = self.info.get(name)
        return value if isinstance(value, dict) else {}

    @functools.cached_property
    def evaluation(self) -> Optional[EvaluationEntry]:
        """The run's newest evaluation (`run/evaluations.py`), read once."""
        return newest_evaluation(self.experiment.root, self.info)

    def test_metrics(self) -> Dict[str, Any]:
        """The newest evaluation's metrics as `test_<name>` keys."""
        evaluation = self.evaluation or {}
        metrics = cast(Dict[str, Any], evaluation.get("metrics") if isinstance(evaluation.get("metrics"), dict) else {})
        return {f"{TEST_PREFIX}{name}": value for name, value in metrics.items()}

    def keys(self) -> Set[str]:
        """The keys this run has a value for, beyond the built-in ones."""
        return set(self.test_metrics()) | set(self._dict("hparams")) | set(self._dict("last_epoch_logs"))

    def value(self, key: str) -> Any:
        """The typed value of `key` (a number, a str, a list, a dict), or None when this run has none."""
        info = self.info
        best = info.get("best_value")
        builtin = {
            "experiment": self.relative, "path": str(self.experiment.root.absolute()), "status": self.status,
            "epoch": info.get("rounds_completed" if info.get("federated") else "epochs_completed"),
            "best": best if _is_number(best) else None, "best_value": best if _is_number(best) else None,
            "best_epoch": info.get("best_epoch"), "versions": info.get("exported_versions") or None,
            "monitor": info.get("monitored_loss_name"), "started": info.get("started"), "ended": info.get("ended"),
            "hparams": self._dict("hparams") or None, "device_hours": _rounded(device_hours(info)),
        }
        if key in builtin:
            return builtin[key]
        for source in (self.test_metrics(), self._dict("hparams"), self._dict("last_epoch_logs")):
            if key in source:
                return source[key]
        return None

    def __getitem__(self, key: str) -> str:
        """The text the table shows for `key`."""
        value = self.value(key)
        if key == "epoch":
            return _progress(self.info)
        if key == "status":
            return cast(str, value or "?")
        if key == "best":
            return "-" if value is None else f"{self.info.get('monitored_loss_name', '')}={value:.4g}"
        if key == "hparams":
            return " ".join(f"{name}={hparam}" for name, hparam in (value or {}).items())
        if key == "versions":  # each with the epoch it holds, when recorded: '4@e5' is version 4, epoch 5
            records = self._dict("version_records")
            return ",".join(f"{version}@e{records[str(version)]['epoch']}"
                            if isinstance(records.get(str(version)), dict) and records[str(version)].get("epoch")
                            else str(version) for version in value or []) or "-"
        if isinstance(value, list):
            return ",".join(str(item) for item in value)
        return _shown(value)

    def as_json(self, columns: Iterable[str]) -> Dict[str, Any]:
        """Everything a run's row shows, typed: the listed columns, then what run.json says of its results."""
        info = self.info
        record = {column: self.value(column) for column in columns}
        record.update({
            "path": self.value("path"), "epochs_completed": info.get("epochs_completed"),
            "nbEpoch": info.get("nbEpoch"), "monitor": info.get("monitored_loss_name"),
            "monitor_mode": info.get("monitor_mode"), "best_value": self.value("best_value"),
            "best_epoch": info.get("best_epoch"), "exported_versions": info.get("exported_versions") or [],
            "version_records": self._dict("version_records"), "hparams": self._dict("hparams"),
            "hparam_overrides": self._dict("hparam_overrides"), "last_epoch_logs": self._dict("last_epoch_logs"),
            "evaluation": self.evaluation, **self.test_metrics(),
            "fine_tuned_from": info.get("fine_tuned_from"), "started": info.get("started"), "ended": info.get("ended"),
            "device_hours": self.value("device_hours"),
        })
        return record


def experiment_rows(working_folder: PathLike) -> List[RunRow]:
    """One `RunRow` per experiment found under `working_folder` (e.g. `<sweep>/<experiment>`), oldest first."""
    experiments = [Experiment(folder) for folder in folders_below(working_folder, RUN_FILE_NAME)]
    rows = [RunRow(experiment, experiment.root.relative_to(working_folder).as_posix(), read_run_info(experiment))
            for experiment in experiments]
    return sorted(rows, key=lambda row: str(row.info.get("started") or ""))


def list_runs(folder: PathLike, where: Iterable[str] = (), sort: Iterable[str] = (),
              status: Iterable[str] = ()) -> List[Dict[str, Any]]:
    """The runs below `folder` (up to 4 levels, a sweep's trials too), filtered and sorted as `list` does.

    Args:
        folder: a working folder, a sweep folder, or any folder above several.
        where: conditions `KEY<OP>VALUE` (OP: = != < <= > >=), all of which a run meets (default none); a run
            without a value for KEY is left out.
        sort: keys to sort by, the first first; `-KEY` sorts from the highest (default: oldest first). Runs
            without a value come last.
        status: the statuses to keep (default: all).

    Returns:
        one dict per run: its columns and results, typed (what `list --format json` prints).

    Raises:
        UserInputError: a condition or key that is no column (the message names the known ones).

    Example:

    ```python
    import experiments_manager as em

    best = em.list_runs("experiments/examples/curve_fitting", where=["learningRate<0.05"], sort=["best_value"])[0]
    best["path"], best["best_value"]
    ```
    """
    rows, columns = select_runs(folder, where, sort, status)
    return [row.as_json(columns) for row in rows]


def select_runs(folder: PathLike, where: Iterable[str] = (), sort: Iterable[str] = (), status: Iterable[str] = (),
                wide: bool = False) -> Tuple[List[RunRow], List[str]]:
    """The rows `list` shows and their columns: the runs below `folder` that have one of the statuses and meet
    every condition, in the order `sort` asks.

    Args:
        folder: the listed folder.
        where, sort, status: as `list_runs`'.
        wide: the hparams column too (default False).

    Returns:
        (the `RunRow`s, the columns): `COLUMNS`, the newest evaluations' `test_<name>`, the keys sorted or filtered
        by that are not shown yet, then (`wide`) the hparams.

    Raises:
        UserInputError: a malformed condition, a key that is no column, an unknown status (one line each).

    Example:

    ```python
    rows, columns = select_runs("experiments", where=["status=finished"], sort=["-best_epoch"])
    print(format_rows(rows, columns, "csv"))
    ```
    """
    where, sort, status = ([items] if isinstance(items, str) else list(items) for items in (where, sort, status))
    rows = experiment_rows(folder)
    conditions = _parse_conditions(where, folder)
    keys = [text.strip().lstrip("-") for text in sort]
    known = set(COLUMN_KEYS).union(*(row.keys() for row in rows))
    for option, key in [("--where", key) for key, _, _ in conditions] + [("--sort", key) for key in keys]:
        if key not in known:
            raise UserInputError(f"{folder}: {option}: expected a column ({', '.join(sorted(known))}), got {key!r}")
    for wanted in status:
        if wanted not in STATUSES + WRITER_STATES:
            raise UserInputError(f"{folder}: --status: expected one of {', '.join(STATUSES + WRITER_STATES)}, got "
                                 f"{wanted!r}")
    rows = [row for row in rows if (not status or row.value("status") in status)
            and all(_meets(row.value(key), operator, value) for key, operator, value in conditions)]
    for text in reversed([key.strip() for key in sort]):
        key, descending = text.lstrip("-"), text.startswith("-")
        present = [row for row in rows if row.value(key) is not None]
        rows = (sorted(present, key=lambda row: _order(row.value(key)), reverse=descending)
                + [row for row in rows if row.value(key) is None])
    columns = [column for column in COLUMNS  # (runs of an older engine recorded no devices: no empty column)
               if column != "device_hours" or any(row.value(column) is not None for row in rows)]
    tests = sorted({key for row in rows for key in row.test_metrics()})
    for key in tests + keys + [key for key, _, _ in conditions]:
        if key not in columns and key != "hparams":
            columns.append(key)
    return rows, columns + (["hparams"] if wide else [])


def _parse_conditions(where: Iterable[str], folder: PathLike) -> List[Tuple[str, str, Any]]:
    """[(key, operator, value)] of `--where` conditions; the value a Python literal, else a str."""
    conditions = []
    for text in where:
        found = _CONDITION.match(text)
        if not found or not found.group(3):
            raise UserInputError(f"{folder}: --where: expected KEY=VALUE, KEY!=VALUE, KEY<VALUE, KEY<=VALUE, KEY>VALUE "
                                 f"or KEY>=VALUE (e.g. 'learningRate<0.01', 'optimizer=adam'), got {text!r}")
        key, operator, literal = found.groups()
        conditions.append((key, "=" if operator == "==" else operator, literal_or_text(literal)))
    return conditions


def format_rows(rows: List[RunRow], columns: List[str], form: str = "table", empty: str = "no experiments") -> str:
    """The rows as `list --format` prints them.

    Args:
        rows, columns: what `select_runs` returns.
        form: 'table' (default), 'csv' (the table's columns, header first, numbers in full) or 'json' (a list, one
            object per run: `RunRow.as_json`).
        empty: what a table of no rows says (default 'no experiments').

    Example:

    ```python
    print(format_rows(*select_runs("experiments", sort=["best_value"]), form="csv"))
    ```
    """
    if form == "json":
        return json.dumps([row.as_json(columns) for row in rows], indent=2, default=str)
    if form == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row, column) for column in columns])
        return out.getvalue().rstrip("\n")
    return format_table(rows, columns, empty)


def _csv_cell(row: RunRow, column: str) -> str:
    """A CSV cell: a float in full, an empty cell for no value (what pandas reads as NaN), else the table's text."""
    value = row.value(column)
    if value is None and column not in ("epoch", "status"):
        return ""
    return repr(value) if isinstance(value, float) else row[column]


def sweep_rows(working_folder: PathLike) -> List[Dict[str, str]]:
    """One dict per sweep folder found under `working_folder` (they hold sweep.json), oldest first."""
    rows = []
    for folder in folders_below(working_folder, SWEEP_SPEC_NAME):
        try:
            spec = SweepFolder(folder).spec()
        except UserInputError:  # a sweep.json being replaced, or damaged: list the rest
            continue
        best = spec.get("best") or {}
        monitor = spec.get("monitored_loss_name", "")
        rows.append({
            "sweep": folder.relative_to(working_folder).as_posix(),
            "status": spec.get("status", "?"),
            "trials": f"{spec.get('trials_done', 0)}/{spec.get('max_evals', '?')}",
            "best": "-" if best.get("best_value") is None else f"{monitor}={best['best_value']:.4g}",
            "best_experiment": Path(best["experiment"]).name if best.get("experiment") else "-",
        })
    return rows


class _Row(Protocol):
    """A table's row: the text of each column (a `RunRow`, or a `sweep_rows` dict)."""

    def __getitem__(self, key: str, /) -> object: ...


def format_table(rows: Sequence[_Row], columns: Sequence[str] = COLUMNS, empty: str = "no experiments") -> str:
    """Left-aligned columns separated by two spaces, with a header line."""
    if not rows:
        return empty
    widths = {column: max(len(column), *(len(str(row[column])) for row in rows)) for column in columns}
    # the built-in columns' names in capitals; hparams and metrics as they are spelt (as --sort and --where take them)
    titles = {column: column.upper() if column in COLUMN_KEYS or column in SWEEP_COLUMNS else column
              for column in columns}
    lines = ["  ".join(titles[column].ljust(widths[column]) for column in columns).rstrip()]
    for row in rows:
        lines.append("  ".join(str(row[column]).ljust(widths[column]) for column in columns).rstrip())
    return "\n".join(lines)


def _progress(info: Mapping[str, Any]) -> str:
    """Epochs done / planned; a federation's server counts rounds (`r2/5`)."""
    federated = info.get("federated")
    if federated:
        return f"r{info.get('rounds_completed', 0)}/{federated.get('rounds', '?')}"
    return f"{info.get('epochs_completed', 0)}/{info.get('nbEpoch', '?')}"


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value: Optional[object]) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _order(value: object) -> Tuple[int, float, str]:
    """A sort key that puts numbers before text, each in its own order."""
    return (0, float(value), "") if _is_number(value) else (1, 0.0, str(value))


def _meets(actual: object, operator: str, wanted: object) -> bool:
    """Whether a run's value meets one condition: numbers compare as numbers, anything else as its text."""
    if actual is None:
        return False
    left: Any  # a float or a str, as `right`
    right: Any
    if _is_number(actual) and _is_number(wanted):
        left, right = float(actual), float(wanted)
    else:
        left, right = str(actual), str(wanted)
    return cast(bool, {"=": left == right, "!=": left != right, "<": left < right, "<=": left <= right,
                       ">": left > right, ">=": left >= right}[operator])


def _rounded(hours: Optional[float]) -> Optional[float]:
    """Device-hours to 6 decimals (a second is 0.0003 h): what the table, CSV and JSON show."""
    return None if hours is None else round(hours, 6)
