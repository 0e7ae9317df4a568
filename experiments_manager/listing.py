"""The table printed by `experiments-manager list`."""

from experiments_manager.experiment import find_experiments

COLUMNS = ("experiment", "status", "epoch", "best", "versions", "hparams")


def experiment_rows(working_folder):
    """One dict per experiment under `working_folder`, oldest first."""
    rows = []
    for experiment in find_experiments(working_folder):
        info = experiment.run_info()
        best = info.get("best_value")
        versions = info.get("exported_versions") or []
        rows.append(
            {
                "experiment": experiment.name,
                "status": info.get("status", "?"),
                "epoch": _progress(info),
                "best": "-" if best is None else f"{info.get('monitored_loss_name', '')}={best:.4g}",
                "versions": ",".join(str(v) for v in versions) or "-",
                "hparams": " ".join(f"{k}={v}" for k, v in (info.get("hparams") or {}).items()),
            }
        )
    return rows


def format_table(rows):
    """Left-aligned columns separated by two spaces, with a header line."""
    if not rows:
        return "no experiments"
    widths = {column: max(len(column), *(len(str(row[column])) for row in rows)) for column in COLUMNS}
    lines = ["  ".join(column.upper().ljust(widths[column]) for column in COLUMNS).rstrip()]
    for row in rows:
        lines.append("  ".join(str(row[column]).ljust(widths[column]) for column in COLUMNS).rstrip())
    return "\n".join(lines)


def _progress(info):
    """Epochs done / planned; a federation's server counts rounds (`r2/5`)."""
    federated = info.get("federated")
    if federated:
        return f"r{info.get('rounds_completed', 0)}/{federated.get('rounds', '?')}"
    return f"{info.get('epochs_completed', 0)}/{info.get('nbEpoch', '?')}"
