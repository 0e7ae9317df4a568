"""Hyperopt sweeps: every trial a normal experiment, trained in a warm process of its worker; workers share only the
sweep folder. Shaped as Optuna shapes a study: one trial-state enum, the storage, the sampler and the scheduler
apart, and "how the next trial is picked" in one module.

- `trial_state`: `TrialState`, every state a trial has, and the moves between them.
- `journal`: the storage: one record per trial (`TrialEntry`, its one typed definition), the claim of the worker
  training it.
- `sampler`: the suggestion: hyperopt's algorithm seeded per trial id; TPE's random start-up sized to the sweep.
- `scheduler`: ASHA and Hyperband: the rungs, and which paused trial a worker promotes.
- `next_trial`: how the next trial is picked: take over, then promote, then suggest.
- `store`: the sweep folder as the workers' shared state: the short lock, an ask, a tell, the outputs.
- `outcomes`: how a trial and a sweep end: a trial's run -> its state, the sweep's state -> a worker's exit code.
- `worker_loops`: this process' workers (one, `--workers N`, or one per Slurm array task with `--join`), signals,
  the progress lines and the summary.
- `trial_host`: the warm process of a worker that trains its trials one after the other (`trial_training`: one
  trial in that process; `trial_leftovers`: what a trial leaves there, let go); `trial_runner`: one trial sent to it
  and scored from its run.json.
- `resume_plan`: a resume or a join of a sweep, decided from sweep.json and the request (pure); `driver`: `experiments-
  manager sweep` and `em.sweep`; `request`: what is asked; `code_check`: the code a resume checks.
- `legacy`: sweep folders of an older engine (hyperopt's fmin, Spark's too), joined by workers; `trials_pickle`:
  trials.pickle; `record_repair`: damaged records.
- `spark`: `--parallelism P`: P Spark tasks, each starting one worker process that joins the sweep.
- `results`, `progress`: results.csv, the plot, the console lines, the summary and the progress bar.
- `folder`, `spec_writer`, `space`, `steps`: the sweep folder and sweep.json, the search space, an ask's answers.
"""

ALGORITHMS = ("tpe", "rand", "anneal")
SCHEDULERS = ("none", "asha", "hyperband")
