"""How a sweep's next point is suggested: hyperopt's algorithm (TPE by default, `rand`, `anneal`) over the journal's
trials, seeded per trial id, behind one call (`HyperoptSampler.suggest`); and how many random points TPE draws
before it models (`startup_trials`).

hyperopt learns from every done trial (its value: the best one, or its value at its last rung with a scheduler)
and sees the running ones as trials without a loss, which TPE counts as the worst, so it suggests away from them.
Seeding each suggestion by (sweep seed, trial id) makes a lost trial's point the same again when a sweep resumes.

TPE's random start-up is sized to the sweep: hyperopt's default of 20 random points makes a sweep of 12 trials a
random search; Optuna's default is 10. A sweep draws a quarter of its trials at random, 3 to 20, and never fewer
than 2 per worker (`--startup-trials N` sets it; sweep.json records it).

Example:

```python
sampler = HyperoptSampler(space, SeededSuggestions("tpe", seed=7, startup_trials=startup_trials(40, workers=2)))
hparams, vals = sampler.suggest(tid=3, pairs=journal.numbered())
```
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any, Optional

from hyperopt import JOB_STATE_DONE, JOB_STATE_RUNNING, Trials

from experiments_manager.sweeps import ALGORITHMS
from experiments_manager.sweeps.journal import SCHEDULE_FIELDS, TrialEntry, TrialPair
from experiments_manager.sweeps.space import python_scalar
from experiments_manager.sweeps.trial_state import TrialState
from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.sweeps.space import SearchSpace
    from experiments_manager.sweeps.trials_pickle import TrialDoc

SEED_MODULUS = 2**31 - 1
_HYPEROPT_CMD = ("domain_attachment", "FMinIter_Domain")
MAX_STARTUP_TRIALS = 20  # hyperopt's TPE default: a sweep never draws more points at random
MIN_STARTUP_TRIALS = 3


def startup_trials(max_evals: int, workers: int) -> int:
    """How many trials TPE draws at random before it models: a quarter of the sweep's `max_evals`, at least
    `MIN_STARTUP_TRIALS`, at most 20 (hyperopt's own), and never fewer than 2 per worker (workers that start
    together spread out: 11 workers or more draw more than 20).

    Example:

    ```python
    startup_trials(12, workers=2)    # 4
    startup_trials(100, workers=1)   # 20
    ```
    """
    return max(2 * workers, min(MAX_STARTUP_TRIALS, max(MIN_STARTUP_TRIALS, max_evals // 4)))


class HyperoptSampler:
    """The suggestion of a sweep's next point: `algo` over the journal's trials, in the `space`.

    Args:
        space: the `SearchSpace`.
        algo: the `SeededSuggestions`.

    Example:

    ```python
    sampler = HyperoptSampler(space, SeededSuggestions("tpe", seed=11, startup_trials=startup_trials(12, 2)))
    hparams, vals = sampler.suggest(tid, journal_pairs)
    ```
    """

    def __init__(self, space: SearchSpace, algo: SeededSuggestions) -> None:
        self.space = space
        self.algo = algo
        self._domain: Any = None  # hyperopt's Domain of the space, once built

    def suggest(self, tid: int, pairs: list[TrialPair]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """The algorithm's point for trial `tid`, from the journal's trials: (hparams, hyperopt's vals).

        Args:
            tid: the new trial's id.
            pairs: the journal's (record, entry) pairs (`TrialJournal.numbered()`).
        """
        from hyperopt import space_eval
        from hyperopt.base import Domain, spec_from_misc

        if self._domain is None:
            self._domain = Domain(lambda sample: 0.0, self.space.expressions)
        (doc,) = self.algo([tid], self._domain, hyperopt_trials(pairs, with_running=True), 0)
        vals = {name: [python_scalar(value) for value in values] for name, values in doc["misc"]["vals"].items()}
        sample = space_eval(self.space.expressions, spec_from_misc({"vals": vals}))
        return self.space.hparams_for(sample), vals


class SeededSuggestions:
    """A hyperopt algorithm whose suggestion for trial `tid` is seeded by (sweep seed, tid).

    hyperopt draws one seed per batch from its generator, so a resumed sweep
    would suggest other points than the one it lost. Seeding by trial id makes
    the suggestion of a lost trial the same again (always for `rand` and for
    `tpe`'s random start-up trials; afterwards when the finished trials are the
    same), so the resumed sweep continues the lost trial's experiment.

    Args:
        name: 'tpe', 'rand' or 'anneal'.
        seed: the sweep's seed.
        startup_trials: with 'tpe', the random trials before it models (default None: hyperopt's 20, as sweeps
            before issue 75 recorded; a new sweep passes `startup_trials(max_evals, workers)` or `--startup-trials`).

    Example:

    ```python
    fmin(objective, space, algo=SeededSuggestions("tpe", 42, startup_trials=5), max_evals=20, trials=trials)
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
    ok = entry.status in (TrialState.FINISHED, TrialState.PAUSED) and entry.loss is not None
    result = {"status": "ok" if ok else "fail", "trial_status": entry.status, "hparams": entry.hparams,
              "experiment": entry.experiment, "seconds": entry.seconds, "log": entry.log, "rung": entry.rung,
              **{name: getattr(entry, name) for name in SCHEDULE_FIELDS}}
    if ok:
        result.update(loss=entry.loss, best_value=entry.best_value, best_epoch=entry.best_epoch)
    else:
        result["reason"] = entry.reason
    return result
