"""Hyperopt sweeps: every trial a normal experiment in its own process, resumable, optionally parallel on Spark.

- `space`: the settings' `hyperopt_space`, checked, and each sample as hparam overrides.
- `objective`: one trial = one `trial_process` training an experiment; scored from its run.json.
- `journal`: per-trial records, so a stopped sweep continues its trials' experiments.
- `trials`: hyperopt Trials saved after every trial; suggestions seeded per trial id.
- `spark`: SparkTrials for `--parallelism P`.
- `results`, `progress`: results.csv, the plot, the summary and the progress bar.
- `folder`, `runner`, `command`: the sweep folder, the loop, and `experiments-manager sweep`.
"""

ALGORITHMS = ("tpe", "rand", "anneal")
