"""The names a model's code gave its blocks: the attributes holding a sub-layer in its parent (a subclass'
`self.projector`), where Keras' own name may be one it numbered (`sequential_1`).

Example:

```python
holding_attributes(simclr)[id(simclr.projector)]   # ['projector']
shown_name(simclr, simclr.projector)               # 'projector', whatever Keras named the Sequential
```
"""

from typing import Any, Optional


def holding_attributes(layer: Any) -> dict[int, list[str]]:
    """The public attributes of `layer` holding each of its sub-layers, by the sub-layer's `id`.

    Args:
        layer: a Keras layer or model.
    """
    attributes: dict[int, list[str]] = {}
    for attribute, value in vars(layer).items():
        if not attribute.startswith("_") and hasattr(value, "_flatten_layers"):
            attributes.setdefault(id(value), []).append(attribute)
    return attributes


def shown_name(parent: Any, layer: Any, attributes: Optional[dict[int, list[str]]] = None) -> str:
    """The first attribute of `parent` holding `layer`, else `layer`'s Keras name.

    Args:
        parent: the layer or model holding `layer`.
        layer: one of its sub-layers.
        attributes: `holding_attributes(parent)` when the caller has it (default None: found here).
    """
    held = (holding_attributes(parent) if attributes is None else attributes).get(id(layer))
    return held[0] if held else str(getattr(layer, "name", "?"))
