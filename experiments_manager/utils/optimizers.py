"""The optimizer under Keras' mixed-precision wrapper: where the variables and the EMA averages live.

Training (`training.ema`, `training.model`) and the exporter (which swaps the averages in) both unwrap it here.

Example:

```python
inner_optimizer(model.optimizer).use_ema  # True when the run averages its weights
```
"""

from typing import Any


def inner_optimizer(optimizer: Any) -> Any:
    """The optimizer that keeps the variables (and the averages): Keras wraps it in a LossScaleOptimizer for
    mixed precision.

    Args:
        optimizer: a Keras optimizer, wrapped or not.
    """
    return getattr(optimizer, "inner_optimizer", optimizer)
