"""Sweep folders of another kind, joined by workers: an older engine's sweep (one process, its records keyed by the
sampled hparams, trials.pickle saved after each trial) or a Spark sweep's of before issue 70 (the same records).

Its finished trials in trials.pickle become numbered records once (`import_finished`); a trial the pickle lacks
(the sweep was killed after the trial ended, before the pickle was saved) is found again by its point when the
algorithm suggests it (seeded per trial, it suggests the same points): its hash-keyed record, read once when a
worker opens the sweep (`EarlierRecords`), gives a finished trial's result, or an unfinished one's experiment to
continue.

Example:

```python
import_finished(store.sweep, store.journal, store.locked)   # 12: the finished trials of an older sweep, now numbered
earlier = EarlierRecords.read(sweep.trials_dir)
earlier.result({"learningRate": 0.01})                       # its TrialEntry, or None
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Optional

from experiments_manager.run.record import Status
from experiments_manager.sweeps.folder import SweepFolder
from experiments_manager.sweeps.journal import SCHEDULE_FIELDS, TrialEntry, TrialJournal, TrialRecord, hparams_key
from experiments_manager.sweeps.space import python_scalar
from experiments_manager.sweeps.trial_runner import scored
from experiments_manager.sweeps.trial_state import TrialState
from experiments_manager.sweeps.trials_pickle import add_saved_trials

if TYPE_CHECKING:
    from experiments_manager.sweeps.journal import RecordJSON
    from experiments_manager.sweeps.trials_pickle import TrialDoc

COORDINATION = "shared-journal-1"  # sweep.json's `coordination`: numbered records that workers share (format 1)
_NUMBERED = re.compile(r"trial-\d+\.json")


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
    status = TrialState(result.get("trial_status") or (TrialState.FINISHED if result.get("status") == "ok"
                                                       else TrialState.FAILED))
    vals = {name: [python_scalar(value) for value in values] for name, values in doc["misc"]["vals"].items()}
    return TrialEntry(hparams=result.get("hparams") or {}, tid=doc["tid"], status=status, vals=vals,
                      experiment=result.get("experiment"), log=result.get("log"), reason=result.get("reason"),
                      best_value=result.get("best_value"), best_epoch=result.get("best_epoch"),
                      seconds=result.get("seconds"), loss=result.get("loss") if result.get("status") == "ok" else None,
                      **{name: result[name] for name in SCHEDULE_FIELDS if result.get(name) is not None})


class EarlierRecords:
    """The records an older engine wrote in a sweep's trials/ (keyed by the sampled hparams, no trial id), read once.

    Args:
        records: the hash of the hparams (`journal.hparams_key`) -> the record's JSON.
    """

    def __init__(self, records: dict[str, RecordJSON]) -> None:
        self.records = records

    @classmethod
    def read(cls, trials_dir: Path) -> EarlierRecords:
        """The hash-keyed records in `trials_dir` (none in a sweep that never had them: a listing, no read)."""
        records: dict[str, RecordJSON] = {}
        for path in Path(trials_dir).glob("trial-*.json") if Path(trials_dir).is_dir() else ():
            if _NUMBERED.fullmatch(path.name):
                continue
            info = TrialRecord(path).read()
            if info.get("tid") is None:
                records[path.stem] = info
        return cls(records)

    def result(self, hparams: dict[str, Any]) -> Optional[TrialEntry]:
        """The result of this point when a sweep of another kind finished it (after its last trials.pickle), or None:
        not trained twice."""
        info = self.records.get(hparams_key(hparams), {})
        if info.get("status") == Status.FAILED:
            return TrialEntry(hparams=hparams, status=TrialState.FAILED, experiment=info.get("experiment"),
                              log=info.get("log"), reason=info.get("reason"), seconds=info.get("seconds"))
        if info.get("status") != Status.FINISHED:
            return None
        outcome = scored(info, 0, info.get("log"))
        return TrialEntry(hparams=hparams, status=outcome.state, experiment=outcome.experiment, log=info.get("log"),
                          reason=outcome.reason, best_value=outcome.best_value, best_epoch=outcome.best_epoch,
                          loss=outcome.loss, seconds=info.get("seconds"))

    def experiment(self, hparams: dict[str, Any]) -> Optional[str]:
        """The experiment a sweep of another kind started for this point and did not finish (continued, not started
        again), or None."""
        info = self.records.get(hparams_key(hparams), {})
        found: Optional[str] = info.get("experiment")
        return found if info.get("status") in (Status.RUNNING, Status.INTERRUPTED) else None
