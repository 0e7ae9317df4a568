"""What one run trains with: the compiled model, its inputs and its callbacks (`Trainer.open_session` makes it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from experiments_manager.training.built_model import BuiltModel

if TYPE_CHECKING:
    from experiments_manager.training.callback_plan import CallbackPlan
    from experiments_manager.training.ema import WeightAverages
    from experiments_manager.training.inputs import InputObject


class TrainingSession:
    """What one run trains with: the compiled model, its inputs and its callbacks.

    Attributes:
        model: the compiled Keras model.
        inputs: the input object (see `experiments_manager.training.inputs`).
        plan: the callbacks, with the run's best value, checkpoint and epoch count.
        averages: the `WeightAverages` (EMA) of the run, or None without EMA.
        learning_rate: what `get_learningRate()` returned (default None).
        strategy: the distribution strategy the model was built under (default None: not known).
        user_modules: the user's own modules the model was built with (default none).

    Example:

    ```python
    with trainer.open_session() as session:
        history, stopped = trainer.fit(session, epochs=3)
    ```
    """

    def __init__(self, model: Any, inputs: InputObject, plan: CallbackPlan,
                 averages: Optional[WeightAverages] = None, learning_rate: Any = None, strategy: Any = None,
                 user_modules: Sequence[Path] = ()) -> None:
        self.model = model
        self.inputs = inputs
        self.plan = plan
        self.averages = averages
        self.learning_rate = learning_rate
        self.strategy = strategy
        self.user_modules = list(user_modules)

    def built(self) -> BuiltModel:
        """The model as this session leaves it, with its served module and versions' template (the exporter's):
        what a resume in this process may continue with (`Trainer(warm=...)`)."""
        module, template = self.plan.exporter.served_parts() if self.plan.exporter is not None else (None, None)
        return BuiltModel(self.model, self.learning_rate, self.averages, module, template, strategy=self.strategy,
                          user_modules=self.user_modules)

    def __enter__(self) -> TrainingSession:
        return self

    def __exit__(self, kind: object, error: Optional[BaseException], trace: object) -> None:
        self.close(error)

    def close(self, ending: Optional[BaseException] = None) -> None:
        """Waits for a version being written, then closes the inputs.

        Args:
            ending: the error ending the run, if any (default None; see `CallbackPlan.close`). `with session:`
                passes the error leaving the block.
        """
        try:
            self.plan.close(ending)
        finally:
            self.inputs.close()
