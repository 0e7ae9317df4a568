"""Federated training with Flower: one ServerApp and one ClientApp built from a settings module.

- `federation_config`: the federation's shape from the settings (strategy, minCl/minFit/minEval, rounds).
- `job`: what both apps need to know (settings, experiment folder), as Flower run config.
- `federated_client`: a client trains its partition with the engine's own Trainer, round after round.
- `federation_server`: the server evaluates, logs and exports the global model in its experiment folder.
- `apps`: the `ServerApp` and the `ClientApp`s (in-process, or the thin one that asks the SuperNode's worker).
- `supernode_worker`, `worker_protocol`, `keeper`: a deployed SuperNode's persistent worker (TensorFlow imported once), how
  the ClientApp talks to it, and the process that keeps it running with the SuperNode.
- `flower_supernode`: Flower's SuperNode with one mend of its loop (a stopped run's message is dropped).
- `simulation`, `deployment`, `entry_points`: `experiments-manager federated simulate|run|superlink|supernode`.
"""
