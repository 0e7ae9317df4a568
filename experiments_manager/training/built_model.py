"""A model built and compiled for training, kept with what exporting it needs (its served module, the template of
its versions), so that it is not built, traced and saved again: a new run's checked model, or a paused sweep trial's.

Example:

```python
built = BuiltModel(model, learning_rate=0.01, averages=averages, module=module, template=template)
```
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from experiments_manager.export.template import SavedModelTemplate
    from experiments_manager.training.ema import WeightAverages


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
        skipped: with `--init-from --skip-mismatch`, the weights left as the model made them.
        initial_weights_loaded: the `--init-from` version was loaded into the model (it is, once the model is built).
    """

    model: Any
    learning_rate: Any
    averages: Optional[WeightAverages]
    module: Any = None
    template: Optional[SavedModelTemplate] = None
    skipped: list[str] = dataclasses.field(default_factory=list)
    initial_weights_loaded: bool = False
