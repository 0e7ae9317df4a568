"""A sweep's results: one row per trial, results.csv, the loss-vs-hparam plot and the closing summary."""

from __future__ import annotations

import csv
import enum
import math
import numbers
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

from experiments_manager.sweeps.trial_state import TrialState
from experiments_manager.utils.atomic import replaced_atomically
from experiments_manager.utils.command_name import command_name

if TYPE_CHECKING:
    from experiments_manager.sweeps.folder import SweepFolder
    from experiments_manager.sweeps.journal import TrialEntry, TrialPair
    from experiments_manager.sweeps.scheduler import ScheduleJSON
    from experiments_manager.sweeps.space import SearchSpace

Row = dict[str, Any]  # one trial's results row: "trial" (its number), each swept hparam by name, then `trial_rows`'


def trial_rows(pairs: list[TrialPair], names: list[str]) -> list[Row]:
    """One row per done trial (finished, failed, paused at a rung), by trial number: the hparams, then status, best
    value and folder, from its record.

    Args:
        pairs: the journal's (record, entry) pairs (`TrialJournal.numbered()`).
        names: the swept hparam names (columns, in order).
    """
    return [trial_row(entry, names) for _, entry in pairs if entry.done and entry.vals is not None]


def trial_row(entry: TrialEntry, names: list[str]) -> Row:
    """A done trial's row: its value (and what hyperopt minimised) when it has one, else why it failed."""
    scored = entry.status in (TrialState.FINISHED, TrialState.PAUSED) and entry.loss is not None
    return {
        "trial": entry.number,
        **{name: entry.hparams.get(name) for name in names},
        "status": entry.status,
        "best_value": entry.best_value if scored else None,
        "loss": entry.loss if scored else None,  # what hyperopt minimised: best_value, negated when it is maximised
        "best_epoch": entry.best_epoch if scored else None,
        "rung": entry.rung,  # a scheduler's: the epochs of the last rung the trial reached
        "epochs_trained": entry.epochs_trained,
        "seconds": entry.seconds,
        "experiment": entry.experiment,
        "reason": None if scored else entry.reason,
        "log": entry.log,
    }


def rung_row(entry: TrialEntry, names: list[str]) -> Row:
    """The row of a scheduled trial that trains on past a rung it reached (promoted, running, interrupted): its
    value and best epoch at that rung, its status as the record says."""
    return {"trial": entry.number, **{name: entry.hparams.get(name) for name in names}, "status": entry.status,
            "best_value": entry.best_value, "loss": entry.rung_values[str(entry.rung)], "best_epoch": entry.best_epoch,
            "rung": entry.rung, "epochs_trained": entry.epochs_trained, "seconds": entry.seconds,
            "experiment": entry.experiment, "reason": entry.reason, "log": entry.log}


class Standing(enum.Enum):
    """Where a row stands in the results: with a value at the end, with one at a lower rung, or without one."""

    FINISHED = enum.auto()
    AT_A_RUNG = enum.auto()  # paused at a rung, or training on past one: a scheduler's value there
    FAILED = enum.auto()  # failed, or no value


def standing(row: Row) -> Standing:
    """Where a results row stands (`Standing`)."""
    if not _finite(row["loss"]) or row["status"] == TrialState.FAILED:
        return Standing.FAILED
    if row["status"] == TrialState.FINISHED:
        return Standing.FINISHED
    return Standing.AT_A_RUNG if row["status"] == TrialState.PAUSED or row.get("rung") is not None else Standing.FAILED


def device_hours_of(rows: list[Row], max_epochs: Optional[int] = None) -> tuple[float, Optional[float]]:
    """(the device-hours the trials cost, from each experiment's run.json; with a scheduler's `max_epochs`, what
    the same trials would have cost trained to it, at the cost per epoch each had: None without one). Trials
    whose run.json cannot be read, or has no devices recorded, are left out; an experiment is counted once (a
    point suggested again reuses the earlier trial's experiment)."""
    from experiments_manager.run.attempts import device_hours
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.utils.errors import UserInputError

    total, full, counted = 0.0, 0.0, set()
    for row in rows:
        if not row.get("experiment") or row["experiment"] in counted:
            continue
        counted.add(row["experiment"])
        try:
            hours = device_hours(Experiment(row["experiment"]).run_info())
        except (OSError, UserInputError):
            hours = None
        if hours is None:
            continue
        total += hours
        trained = row.get("epochs_trained")
        full += hours * max_epochs / trained if max_epochs and trained else hours
    return round(total, 6), (round(full, 6) if max_epochs else None)


def best_row(rows: list[Row]) -> Optional[Row]:
    """The finished trial with the best value (lowest loss for hyperopt), or None. With a scheduler, among the
    trials that reached the highest rung any reached (a value after 1 epoch is not compared with one after 9)."""
    scored = [row for row in rows if standing(row) is not Standing.FAILED]
    if any(row.get("rung") is not None for row in scored):
        top = max(row["rung"] or 0 for row in scored)
        scored = [row for row in scored if (row["rung"] or 0) == top]
    else:
        scored = [row for row in scored if row["status"] == TrialState.FINISHED]
    return min(scored, key=lambda row: row["loss"]) if scored else None


def write_results_csv(rows: list[Row], names: list[str], monitor: str, path: Path, scheduled: bool = False) -> None:
    """results.csv: trial, the hparams, status, best_<monitor>, best_epoch, (with a scheduler: rung and
    epochs_trained,) seconds, experiment, reason, log."""
    fields = ["trial", *names, "status", "best_value", "best_epoch", *(["rung", "epochs_trained"] if scheduled else []),
              "seconds", "experiment", "reason", "log"]
    columns = [f"best_{monitor}" if field == "best_value" else field for field in fields]
    with replaced_atomically(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row[field]) for field in fields])


def plot_loss_vs_hparams(rows: list[Row], space: SearchSpace, monitor: str, png: Path) -> None:
    """One panel per swept hparam: each trial's best value against the hparam, best trial starred, failed ones crossed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = space.names
    scored = [row for row in rows if standing(row) is Standing.FINISHED]
    paused = [row for row in rows if standing(row) is Standing.AT_A_RUNG]
    failed = [row for row in rows if standing(row) is Standing.FAILED]
    best = best_row(rows)
    columns = min(3, len(names))
    lines = math.ceil(len(names) / columns)
    figure = Figure(figsize=(4.5 * columns, 3.5 * lines), tight_layout=True)
    FigureCanvasAgg(figure)
    for index, name in enumerate(names):
        axes = figure.add_subplot(lines, columns, index + 1)
        positions = _positions([row[name] for row in rows], axes)
        axes.scatter([positions[_key(row[name])] for row in scored], [row["best_value"] for row in scored],
                     label="trials")
        if paused:
            axes.scatter([positions[_key(row[name])] for row in paused], [row["best_value"] for row in paused],
                         facecolors="none", edgecolors="tab:gray", label="at a lower rung")
        if best is not None:
            axes.scatter([positions[_key(best[name])]], [best["best_value"]], marker="*", s=200, color="tab:orange",
                         label=f"best (trial {best['trial']})")
        if failed and (scored or paused):
            worst = max(scored + paused, key=lambda row: row["loss"])["best_value"]
            axes.scatter([positions[_key(row[name])] for row in failed], [worst] * len(failed), marker="x",
                         color="tab:red", label=TrialState.FAILED.value)
        if space.is_log_scaled(name):
            axes.set_xscale("log")
        axes.set_xlabel(name)
        axes.set_ylabel(f"best {monitor}")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    with replaced_atomically(png) as tmp:
        figure.savefig(tmp, format="png")


def trial_line(row: Row, best: Optional[Row], max_evals: int, monitor: str, trials_dir: Path) -> str:
    """The console line of one trial that ended: its value and the best so far, or why it failed."""
    head = f"trial {row['trial']}/{max_evals}"
    if standing(row) is Standing.FAILED:
        return f"{head} failed: {row['reason']} (log: {row.get('log') or trials_dir})"
    if row.get("rung") is not None:
        head += f" {row['status']} at {row['rung']} epochs:"
    best = cast(Row, best)  # a trial that did not fail ranks (`best_row`): there is a best
    return (f"{head} {monitor}={row['best_value']:.6g} (epoch {row['best_epoch']}), "
            f"best {best['best_value']:.6g} (trial {best['trial']}), {row['seconds']:.1f} s: {row['experiment']}")


def summary_lines(sweep: SweepFolder, rows: list[Row], monitor: str, working_folder: str) -> list[str]:
    """The closing report: counts, the best trial and how to serve it."""
    paused = sum(standing(row) is Standing.AT_A_RUNG for row in rows)
    failed = sum(standing(row) is Standing.FAILED for row in rows)
    best = best_row(rows)
    lines = [f"sweep folder:      {sweep.root}",
             f"trials:            {len(rows)} ({len(rows) - failed - paused} finished, "
             + (f"{paused} at a lower rung, " if paused else "") + f"{failed} failed)"]
    if not rows:
        lines.append("best trial:        none yet (no trial has ended)")
    elif best is None:
        lines.append("best trial:        none (every trial failed: see the reason column of results.csv)")
    else:
        hparams = " ".join(f"{name}={best[name]}" for name in sweep.spec()["space"])
        lines += [f"{'best ' + monitor + ':':<18} {best['best_value']:.6g} (trial {best['trial']}, epoch {best['best_epoch']})",
                  f"best hparams:      {hparams}",
                  f"best experiment:   {best['experiment']}",
                  f"serve it:          {command_name()} serve --model_dir {best['experiment']}"]
    spec = sweep.spec()
    if spec.get("device_hours") is not None:
        hours = f"device-hours:      {spec['device_hours']:.4g}"
        if spec.get("device_hours_full"):
            saved = 1 - spec["device_hours"] / cast(float, spec["device_hours_full"])
            scheduler = cast("ScheduleJSON", spec["scheduler"])  # device_hours_full: only with a scheduler
            hours += (f" ({spec['device_hours_full']:.4g} had every trial trained {scheduler['max_epochs']}"
                      f" epochs: {saved:.0%} saved by {scheduler['kind']})")
        lines.append(hours)
    lines.append(f"results:           {sweep.results_csv}")
    if sweep.plot_png.is_file():
        lines.append(f"loss vs hparams:   {sweep.plot_png}")
    lines += [f"TensorBoard:       tensorboard --logdir {sweep.root}   (HParams tab: every trial;"
              f" --logdir {working_folder}: with every other run)"]
    return lines


def _positions(values: list[Any], axes: Any) -> dict[Any, Any]:
    """x positions: the values themselves when numeric, else one slot per category (labelled)."""
    if all(isinstance(value, numbers.Real) and not isinstance(value, bool) for value in values):
        return {_key(value): value for value in values}
    # numbers first, in order, then texts (`hp.choice([None, 32, 64])` mixes them)
    categories = sorted({_key(value) for value in values}, key=lambda key: (isinstance(key, str), key))
    axes.set_xticks(range(len(categories)), categories)
    return {category: index for index, category in enumerate(categories)}


def _key(value: Any) -> Any:  # (a number, else its text)
    return value if isinstance(value, numbers.Real) and not isinstance(value, bool) else str(value)


def _finite(value: object) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)


def _cell(value: object) -> object:
    return "" if value is None else value
