"""The tables printed by `experiments-manager list`: experiments, then sweeps."""

from pathlib import Path

from experiments_manager.utils.errors import UserInputError
from experiments_manager.experiment import find_experiments
from experiments_manager.experiment import SWEEP_SPEC_NAME
from experiments_manager.sweeps.folder import SweepFolder

COLUMNS = ("experiment", "status", "epoch", "best", "versions", "hparams")
SWEEP_COLUMNS = ("sweep", "status", "trials", "best", "best_experiment")


def experiment_rows(working_folder):
    """One dict per experiment under `working_folder` (a sweep's trials as `<sweep>/<experiment>`), oldest first."""
    rows = []
    for experiment in find_experiments(working_folder):
        info = experiment.run_info()
        best = info.get("best_value")
        versions = info.get("exported_versions") or []
        rows.append(
            {
                "experiment": experiment.root.relative_to(working_folder).as_posix(),
                "status": info.get("status", "?"),
                "epoch": _progress(info),
                "best": "-" if best is None else f"{info.get('monitored_loss_name', '')}={best:.4g}",
                "versions": ",".join(str(v) for v in versions) or "-",
                "hparams": " ".join(f"{k}={v}" for k, v in (info.get("hparams") or {}).items()),
            }
        )
    return rows


def sweep_rows(working_folder):
    """One dict per sweep folder under `working_folder` (they hold sweep.json), oldest first."""
    rows = []
    for spec_file in sorted(Path(working_folder).glob(f"*/{SWEEP_SPEC_NAME}")):
        try:
            spec = SweepFolder(spec_file.parent).spec()
        except UserInputError:  # a sweep.json being replaced, or damaged: list the rest
            continue
        best = spec.get("best") or {}
        monitor = spec.get("monitored_loss_name", "")
        rows.append({
            "sweep": spec_file.parent.name,
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
