"""The many runs a researcher manages: list, diff, check, prune, evaluate, and the Python API.

Each module reads run folders through `experiments_manager.run` and changes them only through it:
- `listing`: the rows `experiments-manager list` prints (filters, order, table / CSV / JSON);
- `diff`: what differs between two runs; `check`: a run folder verified and repaired from its records;
- `pruning`: failed runs, old versions and checkpoints, removed safely; `evaluation`: a version on the test set;
- `api`: `em.train`, `em.resume`, `em.sweep`, `em.serve`, `em.load`, `em.evaluate` for notebooks and scripts.

It may import every capability below it (run, settings, training, export, sweeps, federated, serving); only the
command line (`commands`, `cli`) and `edge` import it.
"""
