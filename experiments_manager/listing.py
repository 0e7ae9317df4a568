"""Finding experiments and sweeps below a folder (up to 4 levels), and the tables `experiments-manager list` prints."""

import os
from pathlib import Path

from experiments_manager.experiment import RUN_FILE_NAME, SWEEP_SPEC_NAME, Experiment
from experiments_manager.sweeps.folder import SweepFolder
from experiments_manager.utils.errors import UserInputError

COLUMNS = ("experiment", "status", "epoch", "best", "versions")
WIDE_COLUMNS = COLUMNS + ("hparams",)
SWEEP_COLUMNS = ("sweep", "status", "trials", "best", "best_experiment")


# how far below a folder experiments are looked for: lab folder / working folder / sweep / experiment, one to spare
MAX_DEPTH = 4
_NOT_EXPERIMENTS = {"venv", "node_modules", "__pycache__", "site-packages"}


def folders_below(folder, marker):
    """Folders up to `MAX_DEPTH` levels under `folder` holding the file `marker`. Experiment folders are not looked
    inside (their federated clients are theirs, their logs are many), nor are hidden folders and virtualenvs."""
    if not Path(folder).is_dir():
        raise UserInputError(f"{folder}: no such folder")
    found, top = [], len(Path(folder).parts)
    for parent, subfolders, files in os.walk(folder):
        if marker in files:
            found.append(Path(parent))
        deep = len(Path(parent).parts) - top >= MAX_DEPTH
        if RUN_FILE_NAME in files or deep:
            subfolders[:] = []
        else:
            subfolders[:] = sorted(name for name in subfolders
                                   if not name.startswith(".") and name not in _NOT_EXPERIMENTS)
    return found


def find_experiments(working_folder):
    """Experiment folders up to `MAX_DEPTH` levels below `working_folder` (a sweep's trials included), oldest first."""
    found = [Experiment(folder) for folder in folders_below(working_folder, RUN_FILE_NAME)]
    return sorted(found, key=lambda experiment: experiment.run_info().get("started") or "")


def _run_info(experiment):
    """run.json, or a stand-in saying it cannot be read (another tool's run.json, a damaged file)."""
    try:
        info = experiment.run_info()
    except (OSError, ValueError, UserInputError) as error:
        return {"status": f"unreadable run.json ({type(error).__name__})"}
    return info if isinstance(info, dict) else {"status": "unreadable run.json (not an object)"}


def experiment_rows(working_folder):
    """One dict per experiment found under `working_folder` (e.g. `<sweep>/<experiment>`), oldest first."""
    rows = []
    experiments = [Experiment(folder) for folder in folders_below(working_folder, RUN_FILE_NAME)]
    infos = {experiment.root: _run_info(experiment) for experiment in experiments}
    for experiment in sorted(experiments, key=lambda experiment: str(infos[experiment.root].get("started") or "")):
        info = infos[experiment.root]
        best = info.get("best_value")
        versions = info.get("exported_versions") or []
        rows.append(
            {
                "experiment": experiment.root.relative_to(working_folder).as_posix(),
                "status": info.get("status", "?"),
                "epoch": _progress(info),
                "best": f"{info.get('monitored_loss_name', '')}={best:.4g}" if isinstance(best, (int, float)) else "-",
                "versions": ",".join(str(v) for v in versions) or "-",
                "hparams": " ".join(f"{k}={v}" for k, v in (info.get("hparams") or {}).items()),
            }
        )
    return rows


def sweep_rows(working_folder):
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


def format_table(rows, columns=COLUMNS, empty="no experiments"):
    """Left-aligned columns separated by two spaces, with a header line."""
    if not rows:
        return empty
    widths = {column: max(len(column), *(len(str(row[column])) for row in rows)) for column in columns}
    lines = ["  ".join(column.upper().ljust(widths[column]) for column in columns).rstrip()]
    for row in rows:
        lines.append("  ".join(str(row[column]).ljust(widths[column]) for column in columns).rstrip())
    return "\n".join(lines)


def _progress(info):
    """Epochs done / planned; a federation's server counts rounds (`r2/5`)."""
    federated = info.get("federated")
    if federated:
        return f"r{info.get('rounds_completed', 0)}/{federated.get('rounds', '?')}"
    return f"{info.get('epochs_completed', 0)}/{info.get('nbEpoch', '?')}"
