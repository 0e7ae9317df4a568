"""Cleaning up runs (`experiments-manager prune`): what would go, and deleting it safely.

Three kinds of things go, each asked for by the user: failed and interrupted runs (and runs whose writer died
without saying so: status `running`, its lease's holder provably gone); all but the best N trials of a sweep; the
checkpoints of finished runs (their exports stay: serving does not read checkpoints). A run that a live process
writes (`utils/lease.py`: its lease's holder may be alive) is skipped and said so; so is a sweep's trial that the
sweep would continue (its journal record is not done).

A deletion takes the run's lease first (a resume arriving meanwhile is refused, and one that came first makes this
run skipped), checks the run's status is still the one judged, renames what goes to `.deleting-<name>-<pid>` in the
same folder, durably, then removes it. A crash leaves that hidden name, which the next prune removes (and lists).
"""

import dataclasses
import os
import shutil
import stat
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from experiments_manager.run.experiment import SWEEP_SPEC_NAME, Experiment
from experiments_manager.run.discovery import folders_below, read_run_info, walk_below
from experiments_manager.run.record import Status
from experiments_manager.runs.listing import experiment_rows
from experiments_manager.settings.monitor import monitor_mode
from experiments_manager.sweeps.folder import SweepFolder
from experiments_manager.sweeps.journal import TrialJournal
from experiments_manager.utils.atomic import PathLike, hidden_for_removal, is_removal_leftover
from experiments_manager.utils.errors import UserInputError
from experiments_manager.run.liveness import DEAD, writer_state
from experiments_manager.utils.lease import LEASE_NAME, Lease, LeaseHeld
from experiments_manager.utils.lease_holder import live_holder

RUN, CHECKPOINTS, LEFTOVER = "run", "checkpoints", "leftover"
DEAD_STATUSES = (Status.FAILED.value, Status.INTERRUPTED.value)


@dataclasses.dataclass
class Doomed:
    """One path a prune deletes.

    Args:
        path: the run folder, its checkpoints folder, or a leftover of a crashed removal.
        kind: `RUN`, `CHECKPOINTS` or `LEFTOVER`.
        why: why it goes, in words.
        size: its size on disk in bytes (as `du` counts).
        status: the run's status when judged (checked again before deleting); None for a leftover.
    """

    path: Path
    kind: str
    why: str
    size: int
    status: Optional[str] = None


@dataclasses.dataclass
class Skipped:
    """A run a prune would delete but leaves alone, and why."""

    path: Path
    why: str


@dataclasses.dataclass
class PrunePlan:
    """What `prune` deletes (`doomed`) and leaves alone (`skipped`) below `folder`."""

    folder: Path
    doomed: list[Doomed]
    skipped: list[Skipped]

    @property
    def total(self) -> int:
        return sum(item.size for item in self.doomed)


def plan_prune(folder: PathLike, failed: bool = True, keep_best: Optional[int] = None,
               checkpoints: bool = False) -> PrunePlan:
    """What a prune of `folder` deletes: nothing is deleted here (a dry run prints this plan).

    Args:
        folder: a working folder, a sweep folder or any folder above (runs up to 4 levels below, as `list`).
        failed: failed and interrupted runs, and `running` ones whose writer is gone (default True).
        keep_best: in each sweep folder found, every trial but the best `keep_best` ones (default None: none).
        checkpoints: the `checkpoints/` folders of finished runs (default False).

    Raises:
        UserInputError: `folder` is no folder; `keep_best` given and no sweep folder found.

    Example:

    ```python
    plan = plan_prune("experiments/examples/curve_fitting", failed=True, checkpoints=True)
    [(item.path, item.size) for item in plan.doomed]
    ```
    """
    folder = Path(folder)
    sweeps = {path: _SweepTrials(path) for path in folders_below(folder, SWEEP_SPEC_NAME)}
    if keep_best is not None and not sweeps:
        raise UserInputError(f"{folder}: --keep-best: expected a sweep folder (holding {SWEEP_SPEC_NAME}) or a "
                             "folder above one, got none")
    runs = {row.experiment.root: row.info for row in experiment_rows(folder)}
    reasons: dict[Path, tuple[str, str]] = {}  # run folder -> (kind, why)
    for root, info in runs.items():
        status = info.get("status")
        if failed and (status in DEAD_STATUSES or (status == Status.RUNNING and _writer_gone(root, info))):
            reasons[root] = (RUN, status if status in DEAD_STATUSES else "killed: status running, its writer gone")
    for sweep in sweeps.values() if keep_best is not None else ():
        assert keep_best is not None  # (the loop runs only then)
        for root, why in sweep.beyond_best(keep_best, runs).items():
            reasons.setdefault(root, (RUN, why))
    for root, info in runs.items() if checkpoints else ():
        if root not in reasons and info.get("status") == Status.FINISHED and (root / "checkpoints").is_dir():
            reasons[root] = (CHECKPOINTS, "checkpoints of a finished run; it can no longer be resumed or extended")
    doomed, skipped = [], []
    for root, (kind, why) in sorted(reasons.items()):
        parent_sweep = sweeps.get(root.parent)
        reason_to_keep = _being_written(root) or (parent_sweep.continues(root, runs[root]) if parent_sweep else None)
        if reason_to_keep:
            skipped.append(Skipped(root, reason_to_keep))
            continue
        path = root / "checkpoints" if kind == CHECKPOINTS else root
        doomed.append(Doomed(path, kind, why, disk_usage(path), runs[root].get("status")))
    doomed += [Doomed(path, LEFTOVER, "left by a removal that was interrupted", disk_usage(path))
               for path in _leftovers(folder)]
    return PrunePlan(folder, doomed, skipped)


def carry_out(plan: PrunePlan, command: Sequence[str] = ()) -> list[tuple[Doomed, str | None]]:
    """Deletes what `plan` dooms; returns [(Doomed, None when deleted, else why it was left alone)].

    Args:
        plan: a `PrunePlan` from `plan_prune`.
        command: this process' command line, recorded in the leases it takes (default none).

    Example:

    ```python
    results = carry_out(plan_prune("experiments/examples/curve_fitting"), ["experiments-manager", "prune", "--yes"])
    freed = sum(item.size for item, left_alone in results if left_alone is None)
    ```
    """
    results: list[tuple[Doomed, str | None]] = []
    for item in plan.doomed:
        if item.kind == LEFTOVER:
            _remove(item.path)
            results.append((item, None))
            continue
        root = item.path.parent if item.kind == CHECKPOINTS else item.path
        try:
            lease = Lease.acquire(root, command, what="experiment", announce=False, patient=False)
        except LeaseHeld as held:
            results.append((item, f"being written now ({held})"))
            continue
        except FileNotFoundError:  # another prune took it meanwhile
            results.append((item, "gone meanwhile"))
            continue
        try:
            status = read_run_info(Experiment(root)).get("status")
            if status != item.status or not item.path.exists():
                results.append((item, f"its status changed since (now {status})" if item.path.exists()
                                else "gone meanwhile"))
                continue
            place = linked_checkpoints(root)  # (outside the folder: removed with what links to it)
            hidden = hidden_for_removal(item.path, durable=True)
            if item.kind == CHECKPOINTS:
                experiment = Experiment(root)
                experiment.lease = lease
                experiment.record.checkpoints_pruned()
        except OSError as error:  # a permission, a busy mount: this one stays, and the others still go
            results.append((item, f"not removed ({type(error).__name__}: {error.strerror or error})"))
            continue
        finally:
            lease.release()  # (a run's lease went with its folder: nothing left to remove)
        _remove(hidden)
        if place is not None:  # (outside the run's folder: a failure there is said, the prune goes on)
            try:
                _remove(hidden_for_removal(place, durable=True))
            except OSError as error:
                results.append((item, f"removed, but not its checkpoints at {place} ({error.strerror or error})"))
                continue
        results.append((item, None))
    return results


def linked_checkpoints(root: Path) -> Optional[Path]:
    """The place a run's `checkpoints/` links to when the engine made the link for this run (the settings'
    `checkpoints_folder`): run.json's `checkpoints_link`, the link leading there, the place yours and naming this
    run's folder in its `checkpoints_link.OWNER_MARKER`; None otherwise (a checkpoints folder of its own; a copy of
    the run, whose link leads to the original's place; a link the engine did not make): then only the link goes.

    Args:
        root: the run's folder.
    """
    from experiments_manager.run.checkpoints_link import OWNER_MARKER

    recorded = read_run_info(Experiment(root)).get("checkpoints_link")
    link = root / "checkpoints"
    if not isinstance(recorded, str) or not link.is_symlink() or os.readlink(link) != recorded:
        return None
    place = Path(recorded)
    try:
        named = (place / OWNER_MARKER).read_text().strip() == str(root.resolve())
        return place if named and place.stat().st_uid == os.geteuid() else None
    except OSError:  # no marker, or not readable: not shown to be this run's
        return None


def disk_usage(path: PathLike) -> int:
    """Bytes `path` takes on disk, as `du -s --block-size=1` counts them (each hard-linked file once).

    Args:
        path: a file or folder.

    Example:

    ```python
    human_size(disk_usage("experiments/my_run/checkpoints"))  # '148.0 KiB'
    ```
    """
    seen, total = set(), 0
    for entry in [Path(path)] + [Path(parent, name) for parent, folders, files in os.walk(path)
                                 for name in folders + files]:
        try:
            info = entry.lstat()
        except OSError:  # gone meanwhile
            continue
        if (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total


def human_size(size: int) -> str:
    """A size in bytes in binary units, one decimal: '512 B', '148.0 KiB', '1.2 GiB'.

    Args:
        size: bytes.

    Example:

    ```python
    human_size(151552)  # '148.0 KiB'
    ```
    """
    if size < 1024:
        return f"{size} B"
    scaled = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        scaled /= 1024
        if scaled < 1024:
            return f"{scaled:.1f} {unit}"
    return f"{scaled / 1024:.1f} TiB"


class _SweepTrials:
    """A sweep folder's trials: their journal records by experiment folder name (a moved sweep folder still
    matches), and the best trial sweep.json names."""

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root)
        # a record being replaced or damaged is left out: the run's own status decides then
        self.entries = {Path(entry.experiment).name: entry
                        for _, entry in TrialJournal(SweepFolder(root).trials_dir).numbered() if entry.experiment}
        try:
            best = (SweepFolder(root).spec().get("best") or {}).get("experiment")
        except UserInputError:
            best = None
        self.best_name = Path(best).name if best else None

    def continues(self, root: Path, info: Mapping[str, Any]) -> Optional[str]:
        """Why the sweep would continue this trial (its record is not done: a resume of the sweep trains it on),
        or None."""
        entry = self.entries.get(root.name)
        done = entry.done if entry is not None else info.get("status") in (Status.FINISHED, Status.FAILED)
        if done:
            return None
        number = f" {entry.number}" if entry is not None and entry.number else ""
        return f"trial{number} of its sweep is not done: resuming the sweep continues it"

    def beyond_best(self, keep: int, runs: Mapping[Path, Mapping[str, Any]]) -> dict[Path, str]:
        """{trial folder: why} for this sweep's trials other than the best `keep` (by their run.json's best value,
        in the monitored direction; the trial sweep.json names best is always kept)."""
        trials = {root: info for root, info in runs.items() if root.parent == self.root}
        scored = [(root, info) for root, info in trials.items() if info.get("status") == Status.FINISHED
                  and isinstance(info.get("best_value"), (int, float))]
        if scored:  # the trials of a sweep share the monitored name and its direction
            first = scored[0][1]
            mode = monitor_mode(first.get("monitored_loss_name") or "val_loss", first.get("monitor_mode"))
            scored.sort(key=lambda pair: pair[1]["best_value"], reverse=mode == "max")
        kept = {root for root, _ in scored[:keep]} | {root for root in trials if root.name == self.best_name}
        ranks = {root: rank for rank, (root, _) in enumerate(scored, 1)}
        why = {}
        for root, info in trials.items():
            if root in kept:
                continue
            if root in ranks:
                why[root] = (f"not among the best {keep} of its sweep: {info.get('monitored_loss_name')}="
                             f"{info['best_value']:.4g}, rank {ranks[root]} of {len(scored)}")
            else:
                why[root] = f"not among the best {keep} of its sweep: {info.get('status')}, no best value"
        return why


def _being_written(root: Path) -> Optional[str]:
    """'being written by <holder>' while the run's lease holder may be alive, else None."""
    holder = live_holder(root / LEASE_NAME)
    return f"being written by {holder.describe()}" if holder is not None else None


def _writer_gone(root: Path, info: Mapping[str, Any]) -> bool:
    """True when a `running` run's writer provably ended (`run.liveness.writer_state` says `dead`)."""
    return writer_state(root, info) == DEAD


def _leftovers(folder: PathLike) -> list[Path]:
    """`.deleting-*` paths of crashed removals below `folder` (in the folders a listing looks into, and directly in
    experiment folders)."""
    found = []
    for parent, subfolders, files in walk_below(folder):
        found += [Path(parent, name) for name in sorted(subfolders + files) if is_removal_leftover(name)]
    return found


def _remove(path: PathLike) -> None:
    path = Path(path)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
