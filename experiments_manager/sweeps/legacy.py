"""Sweep folders of another kind, joined by workers: an older engine's sweep (one process, its records keyed by the
sampled hparams, trials.pickle saved after each trial) or a Spark sweep's (the same records).

Its finished trials in trials.pickle become numbered records once (`import_finished`); a trial the pickle lacks
(the sweep was killed after the trial ended, before the pickle was saved) is found again by its point when the
algorithm suggests it (seeded per trial, it suggests the same points): a finished one gives its result
(`legacy_result`), an interrupted one its experiment to continue (`legacy_experiment`).

Example:

```python
import_finished(store.sweep, store.journal, store.locked)   # 12: the finished trials of an older sweep, now numbered records
```
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Optional

from experiments_manager.run.record import Status
from experiments_manager.sweeps.folder import SweepFolder
from experiments_manager.sweeps.journal import SCHEDULE_FIELDS, TrialEntry, TrialJournal, TrialRecord, hparams_key
from experiments_manager.sweeps.objective import known_result
from experiments_manager.sweeps.space import python_scalar
from experiments_manager.sweeps.trials import add_saved_trials

if TYPE_CHECKING:
    from experiments_manager.sweeps.journal import RecordJSON
    from experiments_manager.sweeps.trials import TrialDoc

COORDINATION = "shared-journal-1"  # sweep.json's `coordination`: numbered records that workers share (format 1)


def import_finished(sweep: SweepFolder, journal: TrialJournal, locked: Callable[[], ContextManager[object]]) -> int:
    """Makes a sweep folder of another kind one that workers share: its finished trials in trials.pickle become
    numbered records, once (sweep.json's `coordination` then says so). Returns how many were imported.

    Args:
        sweep: the `SweepFolder`.
        journal: its `TrialJournal` (where the numbered records go).
        locked: the sweep's short lock (`SweepStore.locked`), taken for the import.
    """
    from hyperopt import Trials

    with locked():
        if sweep.spec().get("coordination") == COORDINATION:
            return 0
        trials = Trials()
        add_saved_trials(trials, sweep.trials_file, sweep.trials_dir)
        imported = 0
        for doc in trials.trials:
            imported += journal.create(entry_of_doc(doc)) is not None
        sweep.record.chosen({"coordination": COORDINATION})
        return imported


def entry_of_doc(doc: TrialDoc) -> TrialEntry:
    """The journal's entry of a finished trial's hyperopt doc (as trials.pickle keeps it)."""
    result = doc["result"]
    status = result.get("trial_status") or (Status.FINISHED.value if result.get("status") == "ok"
                                            else Status.FAILED.value)
    vals = {name: [python_scalar(value) for value in values] for name, values in doc["misc"]["vals"].items()}
    return TrialEntry(hparams=result.get("hparams") or {}, tid=doc["tid"], status=status, vals=vals,
                      experiment=result.get("experiment"), log=result.get("log"), reason=result.get("reason"),
                      best_value=result.get("best_value"), best_epoch=result.get("best_epoch"),
                      seconds=result.get("seconds"), loss=result.get("loss") if result.get("status") == "ok" else None,
                      **{name: result[name] for name in SCHEDULE_FIELDS if result.get(name) is not None})


def legacy_result(trials_dir: Path, hparams: dict[str, Any]) -> Optional[TrialEntry]:
    """The result of this point when a sweep of another kind finished it (after its last trials.pickle), or None."""
    result = known_result(_legacy_info(trials_dir, hparams), hparams)
    if result is None:
        return None
    return TrialEntry(hparams=hparams, status=result["trial_status"], experiment=result.get("experiment"),
                      log=result.get("log"), reason=result.get("reason"), best_value=result.get("best_value"),
                      best_epoch=result.get("best_epoch"), loss=result.get("loss"))


def legacy_experiment(trials_dir: Path, hparams: dict[str, Any]) -> Optional[str]:
    """The experiment a sweep of another kind started for this point and did not finish (continued, not started
    again), or None."""
    info = _legacy_info(trials_dir, hparams)
    return info.get("experiment") if info.get("status") in (Status.RUNNING, Status.INTERRUPTED) else None


def _legacy_info(trials_dir: Path, hparams: dict[str, Any]) -> RecordJSON:
    """The record a sweep of another kind wrote for this point (keyed by the hparams, no trial id), or {}."""
    info = TrialRecord(Path(trials_dir) / f"{hparams_key(hparams)}.json").read()
    return info if info.get("tid") is None else {}
