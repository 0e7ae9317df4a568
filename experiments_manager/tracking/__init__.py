"""Runs logged to the lab's MLflow tracking server, never in the way of training.

- `options`: the tracking URI (`--mlflow [URI]`, MLFLOW_TRACKING_URI), checked before anything is written;
- `outbox`: what a run has to say to MLflow, appended to its folder (`mlflow_outbox.jsonl`) and what was sent;
- `sender`: the outbox sent to a server, exactly once (also by `experiments-manager mlflow sync`);
- `bridge`: the background thread that sends while the run trains, one warning line when the server is down;
- `session`: one attempt's tracking (its first and last entries, the epochs' metrics).

The engine imports MLflow only when a run is tracked.
"""
