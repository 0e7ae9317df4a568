"""What a sweep is asked to do: `SweepRequest`, built by `experiments-manager sweep` (`commands/sweep.py`) and by
`em.sweep`, run by `driver.run_sweep`.

Example:

```python
request = SweepRequest(usersettings="mysettings.py", max_evals=8, workers=2)
request.check_combinations()     # one line (UserInputError) for options that do not go together
```
"""

import dataclasses
from typing import Optional

from experiments_manager.tracking.options import tracking_uri
from experiments_manager.utils.errors import UserInputError


@dataclasses.dataclass
class SweepRequest:
    """What to sweep: the command line's options (`--hparam` parsed into `hparams`), or `em.sweep`'s arguments.

    Args:
        usersettings: the settings file with a `hyperopt_space` (a new sweep), or None.
        resume: the sweep folder to continue, or None.
        max_evals: the number of trials (required for a new sweep; with resume: more trials).
        hparams: fixed hparam overrides for every trial (dict; default none).
        algo: hyperopt's 'tpe' (default), 'rand' or 'anneal'.
        startup_trials: with 'tpe', the trials drawn at random before it models (default None: a quarter of
            `max_evals`, at least 3 and 2 per worker, at most 20: `sampler.startup_trials`).
        seed: the sweep's seed (default: the settings' `random_seed`, else drawn).
        parallelism: worker processes Spark starts, each joining the sweep (default 1: no Spark).
        spark_master: Spark master URL for parallel trials (default: local).
        workers: worker loops in this process (default 1); every process that joins the sweep adds its own.
        join: a name every task of a job array agrees on (e.g. the array's job id): the first creates the sweep
            folder `<workingFolder>/<session_name>_sweep_<join>`, the others join it (default None: a new folder).
        requeue_file: `--requeue-file` (default None).
        accept_code_change: with resume, train on although the code changed since the trials ran (default False).
        trust_code: with resume, run the sweep's code although another user owns it (default False: refused).
        scheduler: 'asha' or 'hyperband' stops bad trials early (`scheduler.py`); 'none' trains every trial
            `nbEpoch` (default None: the settings' `sweep_scheduler`, else 'none').
        eta: the scheduler's reduction factor (default None: the settings' `sweep_eta`, else 3).
        min_epochs: the scheduler's first rung (default None: the settings' `sweep_min_epochs`, else 1).
        max_epochs: the scheduler's last rung (default None: `nbEpoch`); a resume may raise it, and then the best
            trials that finished continue to it.
        mlflow: the MLflow tracking server every trial logs to, a child run of the sweep's run ('':
            MLFLOW_TRACKING_URI; default None: the settings' `mlflow_tracking_uri`, else not logged; a resume may name
            another).
    """

    usersettings: str | None = None
    resume: str | None = None
    max_evals: int | None = None
    hparams: dict[str, object] = dataclasses.field(default_factory=dict)
    algo: str | None = None
    startup_trials: int | None = None
    seed: int | None = None
    parallelism: int | None = None
    spark_master: str | None = None
    requeue_file: str | None = None
    accept_code_change: bool = False
    trust_code: bool = False
    workers: int | None = None
    join: str | None = None
    scheduler: str | None = None
    eta: int | None = None
    min_epochs: int | None = None
    max_epochs: int | None = None
    mlflow: str | None = None

    def check_combinations(self) -> None:
        """Raises `UserInputError` (one line) for options that do not go together."""
        if self.spark_master and not (self.parallelism and self.parallelism > 1):
            raise UserInputError("--spark-master: only with --parallelism P > 1")
        if self.startup_trials is not None and (self.algo or "tpe") != "tpe":
            raise UserInputError(f"--startup-trials: only with --algo tpe (--algo {self.algo} has no start-up)")
        if not self.resume and self.max_evals is None and self.join is None:
            raise UserInputError("--max-evals: required for a new sweep (the number of trials)")

    def tracking_uri(self) -> Optional[str]:
        """`mlflow` checked (`tracking.options.tracking_uri`: one line for a bad one), or None."""
        return tracking_uri(self.mlflow) if self.mlflow is not None else None
