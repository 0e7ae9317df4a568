"""Training one experiment: the entry points, the trainer, its callback plan and the model it builds.

- `entry_points.py`: `train` and `resume`, the public entry points; route a multi-worker run's workers.
- `trainer.py`: `Trainer` (seeds, strategy, inputs, compiled model, fit, checkpoints, resume).
- `training_session.py`: the `TrainingSession` a driver keeps open across fits (a federated client's rounds).
- `prepared_run.py`: a new run's devices, seed, inputs and model, built once and checked before its folder exists.
- `built_model.py`: `BuiltModel`, a model compiled for training with its served module and versions' template
  (a new run's checked model; a sweep trial's model kept for its next rung).
- `session_options.py`: `SessionOptions`, what a driver changes about a session (no exports, no early stopping...).
- `callback_plan.py`: `CallbackPlan`, the callbacks of a run in the order their work depends on, and `RunRecords`,
  the part that records a run (history.csv, TensorBoard, PNG, exports, run.json) which the federated server reuses.
- `model.py`: building the model from the model file, compiling it, the precision policy, the learning rate recorded.
- `problem_lines.py`: what the user's code raised, said in one line (file, function, line).
- `outcome.py`: `TrainingOutcome`, what a run ended with.

Drivers around the trainer (sweep trials, federated clients, `train --workers N`, Kafka inputs) pass behaviour
options and data (`SessionOptions`, a data partition, a `WorkerCluster`), never their identity.
"""

from experiments_manager.training.callback_plan import CallbackPlan, RunRecords, tensorboard_reports
from experiments_manager.training.entry_points import resume, train
from experiments_manager.training.model import build_model, compile_for_evaluation
from experiments_manager.training.outcome import TrainingOutcome
from experiments_manager.training.session_options import SessionOptions
from experiments_manager.training.trainer import Trainer
from experiments_manager.training.training_session import TrainingSession

__all__ = ["CallbackPlan", "RunRecords", "SessionOptions", "Trainer", "TrainingOutcome", "TrainingSession",
           "build_model", "compile_for_evaluation", "resume", "tensorboard_reports", "train"]
