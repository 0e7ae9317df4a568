"""Writes a resumable checkpoint at the end of every epoch."""

import keras


class TrainingCheckpoint(keras.callbacks.Callback):
    """Saves model, optimizer and callback state after each epoch.

    Place it after every callback whose state it saves, so the saved state
    includes this epoch.

    Args:
        checkpointer: an `experiments_manager.checkpointing.Checkpointer`.
        stateful: dict name -> object with `get_state()` (callbacks, `BestValue`).

    Example:

    ```python
    TrainingCheckpoint(Checkpointer(experiment.checkpoints_dir), {"early_stopping": stopper})
    ```
    """

    def __init__(self, checkpointer, stateful):
        super().__init__()
        self.checkpointer = checkpointer
        self.stateful = stateful
        self.epochs_completed = None

    def save(self, epochs_completed):
        state = {
            "epochs_completed": epochs_completed,
            "callbacks": {name: item.get_state() for name, item in self.stateful.items()},
        }
        return self.checkpointer.save(self.model, self.model.optimizer, state)

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_completed = epoch + 1
        self.save(self.epochs_completed)
