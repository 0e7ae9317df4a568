"""A model built and compiled for training, kept with what exporting it needs (its served module, the template of
its versions), so that it is not built, traced and saved again: a new run's checked model, or a paused sweep trial's.

Example:

```python
built = BuiltModel(model, learning_rate=0.01, averages=averages, module=module, template=template)
```
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from experiments_manager.export.template import SavedModelTemplate
    from experiments_manager.training.ema import WeightAverages
    from experiments_manager.training.fine_tuning import WeightTransfer

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class BuiltModel:
    """A model built and compiled for training, with its served module and the template of its versions: what a
    new run's check made of the model it trains (`dry_build.checked_training_model`), and what a warm trial host
    keeps of a trial paused at a rung, for its next rung (`Trainer(warm=...)`: its checkpoint restored into it).

    Attributes:
        model: the compiled Keras model (its optimizer built, EMA attached).
        learning_rate: what `get_learningRate()` returned.
        averages: the `WeightAverages` (EMA) attached, or None.
        module: its served module, traced and saved once (None: the model is built only by its first batch).
        template: the `SavedModelTemplate` of that save (the run's versions are written from it), or None when
            every version must be a full save.
        transfer: what the `--init-from` version gave the model (`fine_tuning.WeightTransfer`), once it was loaded
            into it (when the model is built); None before.
        strategy: the distribution strategy it was built under (None: not known; a kept model continues only under
            the same one).
        user_modules: the user's own modules the model was built with (a helper beside the model file): what a
            continuing attempt records as its code, though a warm host has let go of the modules since.

    A kept model continues its random layers' generators (Dropout's) where they were, as a run not stopped at the
    rung would; a cold resume builds them afresh.
    """

    model: Any
    learning_rate: Any
    averages: Optional[WeightAverages]
    module: Any = None
    template: Optional[SavedModelTemplate] = None
    transfer: Optional[WeightTransfer] = None
    strategy: Any = None
    user_modules: list[Path] = dataclasses.field(default_factory=list)

    def continues(self, strategy: Any, learning_rate: Any) -> bool:
        """Whether an attempt that would build its model under `strategy` with `learning_rate` continues with this
        one (`why_not_continued`), said in the log either way: else it builds it again."""
        why_not = self.why_not_continued(strategy, learning_rate)
        if why_not is not None:
            _LOG.info("Building the model again (%s), its checkpoint restored into it", why_not)
            return False
        _LOG.info("Continuing with the model this process trained it with (its checkpoint restored into it)")
        return True

    def why_not_continued(self, strategy: Any, learning_rate: Any) -> Optional[str]:
        """Why an attempt that would build its model under `strategy` with `learning_rate` (what
        `get_learningRate()` returns now) cannot continue with this one, or None when it can: built under another
        strategy, or another rate or schedule (one sized by `nbEpoch`, which a rung changes)."""
        if self.strategy is None or self.strategy is not strategy:
            return "another distribution strategy"
        if not same_learning_rate(self.learning_rate, learning_rate):
            return "get_learningRate() gives another rate or schedule now"
        return None


def same_learning_rate(kept: Any, fresh: Any) -> bool:
    """Whether two values `get_learningRate()` returned train alike: equal numbers, or schedules of one class with
    equal configurations."""
    if isinstance(kept, numbers.Real) and isinstance(fresh, numbers.Real):
        return float(kept) == float(fresh)
    if type(kept) is not type(fresh) or not hasattr(kept, "get_config"):
        return False
    try:
        return bool(kept.get_config() == fresh.get_config())
    except Exception:  # noqa: BLE001 - a schedule whose configuration cannot be read or compared: built again
        return False
