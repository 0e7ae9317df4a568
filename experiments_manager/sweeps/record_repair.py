"""Damaged trial records (`trials/trial-NNNN.json` overwritten, cut short, zeroed by a power loss): named in one
line each, restored or retrained under their own number, never skipped.

A record that cannot be parsed (its file reads, its content is not a trial's record) is, under the sweep's lock:

- **restored** from trials.pickle when the trial was done when the pickle was last saved (the sweep rewrites it
  from the journal after every result: the trial's hparams, hyperopt's point, its result and its experiment);
- else **set aside** as `trial-NNNN.json.damaged`, so the next ask trains that number again from a new point
  (`SweepStore.next_trial` fills the first free number): the sweep's total is never overrun, and its number is
  never trained twice at once (a record whose claim's holder may be alive is left alone).

A record that cannot be *read* (an I/O error, a name a network file system shows a moment before its content) is
not damaged: it is looked at again at the next ask. A worker keeps what it read of a done trial, so the damage of a
record done before is noticed by the next worker to start (a `sweep --resume`, a new array task).

Example:

```python
pairs, damaged = store.journal.scan()
repair_damaged(damaged, store.sweep, store.watch)
# ['trials/trial-0003.json: damaged (not JSON): restored from trials.pickle (finished, loss 0.12)']
```
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Optional

from experiments_manager.sweeps.folder import SweepFolder
from experiments_manager.sweeps.journal import DamagedRecord, TrialEntry
from experiments_manager.sweeps.legacy import entry_of_doc
from experiments_manager.sweeps.trials_pickle import add_saved_trials
from experiments_manager.utils.atomic import fsync_folder, write_json_atomically
from experiments_manager.utils.errors import UserInputError
from experiments_manager.utils.lease_holder import LeaseWatch, live_holder

_LOG = logging.getLogger(__name__)
DAMAGED_SUFFIX = ".damaged"


def repair_damaged(damaged: list[DamagedRecord], sweep: SweepFolder, watch: Optional[LeaseWatch] = None) -> list[str]:
    """Restores or sets aside each damaged numbered record, with one warning line each; returns the lines.

    Args:
        damaged: (record, tid, why) of each damaged record (`TrialJournal.scan`).
        sweep: the `SweepFolder` (trials.pickle).
        watch: the caller's `LeaseWatch` of the claims: a record whose claim's holder may be alive is left alone
            (that worker rewrites it as its trial ends).
    """
    lines = []
    for record, tid, why in damaged:
        if live_holder(record.lock_path, watch=watch) is not None:
            continue
        saved = saved_entry(sweep, tid)
        if saved is not None:
            write_json_atomically(record.path, dataclasses.asdict(saved))
            lines.append(f"{record.path}: damaged ({why}): restored from {sweep.trials_file.name} ({saved.status}"
                         f"{f', loss {saved.loss:.6g}' if saved.loss is not None else ''})")
            continue
        aside = record.path.with_name(record.path.name + DAMAGED_SUFFIX)
        os.replace(record.path, aside)
        fsync_folder(record.path.parent)
        lines.append(f"{record.path}: damaged ({why}) and not finished in {sweep.trials_file.name}: trial {tid + 1} "
                     f"is trained again under its number (the damaged file is kept as {aside.name})")
    for line in lines:
        _LOG.warning("%s", line)
    return lines


def saved_entry(sweep: SweepFolder, tid: int) -> Optional[TrialEntry]:
    """Trial `tid`'s entry as trials.pickle last saved it (once it was done), or None (not done then, or no
    readable pickle)."""
    from hyperopt import Trials

    trials = Trials()
    try:
        add_saved_trials(trials, sweep.trials_file, sweep.trials_dir)
    except UserInputError:
        return None
    return next((entry_of_doc(doc) for doc in trials.trials if doc["tid"] == tid), None)
