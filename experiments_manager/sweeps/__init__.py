"""Hyperopt sweeps: every trial a normal experiment in its own process, run by workers that share the sweep folder.

- `space`: the settings' `hyperopt_space`, checked, and each sample as hparam overrides.
- `journal`: one record per trial (`TrialEntry`), the claim of the worker training it.
- `store`: the sweep folder as the workers' shared state: the short lock, ask (take over, promote or suggest), tell.
- `scheduler`: ASHA and Hyperband: the rungs, and which paused trial a worker promotes.
- `legacy`: sweep folders of an older engine (hyperopt's fmin, Spark's too), joined by workers (their finished trials
  kept).
- `worker`: this process' workers (one, `--workers N`, or one per Slurm array task with `--join`), and signals.
- `objective`: one trial = one `trial_process` training an experiment; scored from its run.json.
- `trials`: suggestions seeded per trial id; the Trials pickle.
- `spark`: `--parallelism P`: P Spark tasks, each starting one worker process that joins the sweep.
- `results`, `progress`: results.csv, the plot, the console lines, the summary and the progress bar.
- `folder`, `driver`, `code_check`: the sweep folder, `experiments-manager sweep` and `em.sweep`, the code a resume
  checks.
"""

ALGORITHMS = ("tpe", "rand", "anneal")
SCHEDULERS = ("none", "asha", "hyperband")
