"""Where training runs: devices, one-host strategies and multi-worker runs.

- `devices.py`: GPU selection and the one-host `tf.distribute` strategy named by the settings.
- `cluster.py`: `WorkerCluster`, the workers of a multi-worker run (from TF_CONFIG or Slurm's variables).
- `strategy.py`: `MultiWorkerStrategy`, MultiWorkerMirroredStrategy with the workers' agreement on stops.
- `local_workers.py`: `train --workers N`, N local processes with a TF_CONFIG each.

The trainer is given the strategy's source explicitly (a `WorkerCluster` or None); nothing here imports the trainer.
"""
