"""One run's folder: every file an experiment folder holds, its one typed definition, and who may write it.

No TensorFlow is imported here (`list`, `prune` and the servers read runs fast). It imports only `utils`.

Modules:
- `experiment`: the `Experiment` (the folder, its layout, run.json read and written, resume discovery);
- `record`: run.json's typed definition (`RunRecord`); `attempts`: run.json's `attempts` (one per process that
  trained the run, device-hours); `names`: folder names and the moments run.json records;
- `reservation`: a new run's folder, named and created before its settings run; `requeue_file`: `--requeue-file`;
- `log`: train.log; `checkpointing`: checkpoints/ (what a resume needs); `weights_file`: a model's Keras weights file
  made in memory (a checkpoint's and a version's), its walk recorded once; `hparams_status`: TensorBoard's run status;
- `version_records` and `served_layout`: exported_models/ as the exporter writes it and the servers read it;
- `liveness`: whether a `running` run still has a writer (its lease, `utils.lease`);
- `discovery`: run folders found below a folder, and read without failing;
- `classification_report`: the confusion matrix and per-class report that evaluations and the projector write.

Writers: the trainer's process holds the run's lease (`utils.lease`) and is the only writer of run.json,
checkpoints/, history.csv and exported_models/ while it runs; `evaluate`, `check` and `prune` take the lease too.
"""
