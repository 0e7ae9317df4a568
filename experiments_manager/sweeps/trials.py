"""hyperopt's Trials, saved after every trial, and suggestions that a resumed sweep can repeat."""

import functools
import importlib
import logging
import pickle
from pathlib import Path
from typing import Any, Optional

from hyperopt import JOB_STATE_DONE, JOB_STATE_RUNNING, Trials

from experiments_manager.run.record import Status
from experiments_manager.utils.atomic import replaced_atomically
from experiments_manager.utils.errors import UserInputError
from experiments_manager.sweeps import ALGORITHMS
from experiments_manager.sweeps.journal import SCHEDULE_FIELDS, TrialEntry, TrialPair

SEED_MODULUS = 2**31 - 1
_HYPEROPT_CMD = ("domain_attachment", "FMinIter_Domain")
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


def _saved_finished_docs(data: bytes) -> list[TrialDoc]:
    """The finished trials' docs of a pickled Trials; raises when `data` is not one."""
    saved = pickle.loads(data)
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


class SeededSuggestions:
    """A hyperopt algorithm whose suggestion for trial `tid` is seeded by (sweep seed, tid).

    hyperopt draws one seed per batch from its generator, so a resumed sweep
    would suggest other points than the one it lost. Seeding by trial id makes
    the suggestion of a lost trial the same again (always for `rand` and for
    `tpe`'s first 20 random trials; afterwards when the finished trials are the
    same), so the resumed sweep continues the lost trial's experiment.

    Args:
        name: 'tpe', 'rand' or 'anneal'.
        seed: the sweep's seed.
        startup_trials: with 'tpe', the random trials before it models (default hyperopt's 20; a sweep of W
            workers passes at least 2 x W, so the first points of workers that start together spread out).

    Example:

    ```python
    fmin(objective, space, algo=SeededSuggestions("tpe", 42), max_evals=20, trials=trials)
    ```
    """

    def __init__(self, name: str, seed: int, startup_trials: Optional[int] = None) -> None:
        if name not in ALGORITHMS:
            raise UserInputError(f"--algo: expected one of {', '.join(ALGORITHMS)}, got {name!r}")
        self.name = name
        self.seed = seed
        self.startup_trials = startup_trials

    def __call__(self, new_ids: list[int], domain: Any, trials: Trials, seed: int) -> list[TrialDoc]:
        suggest = importlib.import_module(f"hyperopt.{self.name}").suggest
        if self.name == "tpe" and self.startup_trials is not None:
            suggest = functools.partial(suggest, n_startup_jobs=self.startup_trials)
        docs: list[TrialDoc] = []
        for tid in new_ids:
            docs += suggest([tid], domain, trials, (self.seed * 1_000_003 + tid) % SEED_MODULUS)
        return docs


def hyperopt_trials(pairs: list[TrialPair], with_running: bool) -> Trials:
    """A hyperopt `Trials` of the journal's numbered trials: the done ones with their results, and (with
    `with_running`) the others as running docs without a loss."""
    trials = Trials()
    docs = []
    for _, entry in pairs:
        if entry.vals is None or not (entry.done or with_running):
            continue
        misc = {"tid": entry.tid, "cmd": _HYPEROPT_CMD, "workdir": None, "vals": entry.vals,
                "idxs": {name: ([entry.tid] if values else []) for name, values in entry.vals.items()}}
        (doc,) = trials.new_trial_docs([entry.tid], [None], [result_of(entry) if entry.done else {"status": "new"}],
                                       [misc])
        doc["state"] = JOB_STATE_DONE if entry.done else JOB_STATE_RUNNING
        docs.append(doc)
    trials.insert_trial_docs(docs)
    trials.refresh()
    return trials


def result_of(entry: TrialEntry) -> dict[str, Any]:
    """hyperopt's result dict of a done trial (what the objective of a sequential sweep returned)."""
    ok = entry.status in (Status.FINISHED, "paused") and entry.loss is not None
    result = {"status": "ok" if ok else "fail", "trial_status": entry.status, "hparams": entry.hparams,
              "experiment": entry.experiment, "seconds": entry.seconds, "log": entry.log, "rung": entry.rung,
              **{name: getattr(entry, name) for name in SCHEDULE_FIELDS}}
    if ok:
        result.update(loss=entry.loss, best_value=entry.best_value, best_epoch=entry.best_epoch)
    else:
        result["reason"] = entry.reason
    return result
