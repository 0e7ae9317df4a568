"""Training one experiment: the entry points, the trainer, its callback plan and the model it builds.

- `entry_points.py`: `train` and `resume`, the public entry points; route a multi-worker run's workers.
- `trainer.py`: `Trainer` (seeds, strategy, inputs, compiled model, fit, checkpoints, resume) and the
  `TrainingSession` a driver keeps open across fits (a federated client's rounds).
- `session_options.py`: `SessionOptions`, what a driver changes about a session (no exports, no early stopping...).
- `callback_plan.py`: `CallbackPlan`, the callbacks of a run in the order their work depends on, and `RunRecords`,
  the part that records a run (history.csv, TensorBoard, PNG, exports, run.json) which the federated server reuses.
- `model.py`: building the model from the model file, compiling it, the precision policy.
- `outcome.py`: `TrainingOutcome`, what a run ended with.

Drivers around the trainer (sweep trials, federated clients, `train --workers N`, Kafka inputs) pass behaviour
options and data (`SessionOptions`, a data partition, a `WorkerCluster`), never their identity.
"""

from experiments_manager.training.callback_plan import CallbackPlan, RunRecords, tensorboard_reports
from experiments_manager.training.entry_points import resume, train
from experiments_manager.training.model import build_model, compile_for_evaluation
from experiments_manager.training.outcome import TrainingOutcome
from experiments_manager.training.session_options import SessionOptions
from experiments_manager.training.trainer import Trainer, TrainingSession

__all__ = ["CallbackPlan", "RunRecords", "SessionOptions", "Trainer", "TrainingOutcome", "TrainingSession",
           "build_model", "compile_for_evaluation", "resume", "tensorboard_reports", "train"]
