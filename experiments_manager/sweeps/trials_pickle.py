"""trials.pickle: hyperopt's `Trials` of a sweep's finished trials, rewritten from the journal after each result for
whoever reads it with `pickle.load`, and read back only where the journal lacks a trial (an older engine's sweep,
a damaged record).

Reading it is never trusted to be a pickle of ours: a damaged file (cut short, overwritten, not a `Trials`) is
named in one warning line and left out; the journal is what the sweep goes by. Nor is it trusted to be harmless: a
pickle can name any function to call as it loads (`os.system`), so it is read by an unpickler that builds only what
a Trials pickle holds (`_TrialsUnpickler`: hyperopt's `Trials`, a trial's `TrialState`, datetimes, numpy scalars,
dtypes and arrays); one that names anything else is refused before it is called, as damaged.

Example:

```python
save_trials(hyperopt_trials(pairs, with_running=False), sweep.trials_file)
add_saved_trials(trials, sweep.trials_file, sweep.trials_dir)   # 3
```
"""

from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path
from typing import Any

from hyperopt import JOB_STATE_DONE, Trials

from experiments_manager.utils.atomic import replaced_atomically
from experiments_manager.utils.errors import UserInputError

_LOG = logging.getLogger(__name__)
TrialDoc = dict[str, Any]  # one trial's document in hyperopt's Trials (tid, state, result, misc...)


def add_saved_trials(trials: Trials, saved_trials_file: Path | None, journal_folder: Path) -> int:
    """Copies the finished trials of a saved Trials pickle into `trials`; returns how many.

    A missing pickle adds none: the resumed sweep suggests the same points again
    (`SeededSuggestions`) and the journal gives back each finished trial's
    result without training it again, and the pickle is written anew after the
    first trial. A damaged one (cut short, overwritten, not a `Trials`) is
    treated the same, with one warning line.

    Args:
        trials: the resumed sweep's (empty) Trials.
        saved_trials_file: `<sweep>/trials.pickle`, or None.
        journal_folder: `<sweep>/trials`, the journal a damaged pickle is rebuilt from (named in the warning).

    Example:

    ```python
    add_saved_trials(trials, sweep.trials_file, sweep.trials_dir)  # 3
    ```
    """
    if saved_trials_file is None or not saved_trials_file.is_file():
        return 0
    try:
        data = saved_trials_file.read_bytes()
    except OSError as error:  # not damaged, unreadable (permissions): the user's to fix
        raise UserInputError(f"{saved_trials_file}: expected a readable hyperopt Trials pickle: {error}") from None
    try:
        docs = _saved_finished_docs(data)
        trials.insert_trial_docs(docs)  # checks every doc before it adds any
    except Exception as error:  # unpickling damaged bytes can raise almost anything
        _warn_damaged(saved_trials_file, error, journal_folder)
        return 0
    trials.refresh()
    return len(docs)


def check_saved_trials(saved_trials_file: Path, journal_folder: Path) -> bool:
    """False, with one warning line, when the Trials pickle is there but damaged (a sweep run by workers writes
    it anew from its journal after the next trial, and when a worker leaves)."""
    try:
        _saved_finished_docs(saved_trials_file.read_bytes())
    except FileNotFoundError:
        return True
    except Exception as error:  # unpickling damaged bytes can raise almost anything
        _warn_damaged(saved_trials_file, error, journal_folder)
        return False
    return True


def _warn_damaged(saved_trials_file: Path, error: BaseException, journal_folder: Path) -> None:
    reason = " ".join(f"{type(error).__name__}: {error}".split())[:120]
    _LOG.warning("%s: damaged, not a hyperopt Trials pickle (%s): rebuilt from the journal in %s "
                 "(finished trials are read back, not trained again)", saved_trials_file, reason, journal_folder)


_TRIALS_PICKLE_GLOBALS = frozenset({  # (module, name) of what a Trials pickle holds: ours, and hyperopt fmin's
    ("hyperopt.base", "Trials"), ("experiments_manager.sweeps.trial_state", "TrialState"),  # results' trial_status
    ("datetime", "datetime"), ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
})


class _TrialsUnpickler(pickle.Unpickler):
    """Builds only what a Trials pickle holds (`_TRIALS_PICKLE_GLOBALS`): a pickle that names anything else is
    refused before it is called, so reading a folder's trials.pickle runs none of its writer's code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _TRIALS_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a Trials pickle does not hold: not loaded")
        return super().find_class(module, name)


def _saved_finished_docs(data: bytes) -> list[TrialDoc]:
    """The finished trials' docs of a pickled Trials; raises when `data` is not one."""
    saved = _TrialsUnpickler(io.BytesIO(data)).load()
    if not isinstance(saved, Trials):
        raise TypeError(f"a pickled {type(saved).__name__}, not Trials")
    return finished_docs(saved)


def finished_docs(trials: Trials) -> list[TrialDoc]:
    """The trials that returned a result (ok or failed); running ones are not kept."""
    return [doc for doc in trials._dynamic_trials if doc["state"] == JOB_STATE_DONE]


def save_trials(trials: Trials, path: Path) -> None:
    """Pickles a plain hyperopt `Trials` of the finished trials, atomically: `pickle.load` gives it back."""
    plain = Trials()
    plain.insert_trial_docs(finished_docs(trials))
    plain.refresh()
    with replaced_atomically(path) as tmp, open(tmp, "wb") as handle:
        pickle.dump(plain, handle)
