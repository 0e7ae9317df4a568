"""A model's optimizers: the one under Keras' mixed-precision wrapper, where the variables and the EMA averages live
(training, `training.ema`, and the exporter, which swaps the averages in, both unwrap it here); and every optimizer a
model holds (a GAN's second one), which a checkpoint keeps and a version leaves out.

Example:

```python
inner_optimizer(model.optimizer).use_ema  # True when the run averages its weights
[name for name, _ in optimizers_of(gan)]   # ['model.optimizer', 'model.d_optimizer']
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


def optimizers_of(model: Any) -> list[tuple[str, Any]]:
    """(`model.<attribute>`, optimizer) for the compiled optimizer and each other optimizer the model holds as an
    attribute, also in a list, tuple or dict (a GAN's `self.d_optimizer`), each once.

    Example:

    ```python
    [name for name, _ in optimizers_of(gan)]   # ['model.optimizer', 'model.d_optimizer']
    ```
    """
    import keras

    found: dict[int, tuple[str, Any]] = {}
    compiled = getattr(model, "optimizer", None)
    if isinstance(compiled, keras.optimizers.Optimizer):
        found[id(compiled)] = ("model.optimizer", compiled)
    for name, value in sorted(vars(model).items()):
        if name.startswith("_self_"):
            continue  # TensorFlow's tracking records (its dependencies by name), not the model's attributes
        items = (value.items() if isinstance(value, dict)
                 else enumerate(value) if isinstance(value, (list, tuple)) else [(None, value)])
        for key, item in items:
            if isinstance(item, keras.optimizers.Optimizer) and id(item) not in found:
                found[id(item)] = (f"model.{name}" + ("" if key is None else f"[{key!r}]"), item)
    return list(found.values())
