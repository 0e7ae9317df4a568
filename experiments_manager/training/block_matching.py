"""Which weights of a new model another model's weights fill: blocks matched by name, then weight by weight.

`--init-from` (`training/fine_tuning.py`) starts a new model from a version of another run, whose model may be built
otherwise: a linear probe (a functional model around an `encoder`) from a SimCLR run (a subclass holding
`self.encoder`, `self.projector`). Weights are not matched by their path inside each model (a subclass' attribute and
a functional model's layer list differ there) but by the blocks the two models share:

- each block of the new model (a sub-model, a layer) is looked for by name among all the blocks of the source, at any
  depth; a block's names are its Keras name and the attributes holding it (`self.encoder`);
- a block found once whose weights have the same shapes in the same order takes them all;
- otherwise its own weights are taken when the found block's own have their shapes, and its sub-blocks are looked for
  in turn; a weight nobody matches is reported with why (no block of that name, another shape, two blocks of that
  name), never guessed.

Blocks are plain data (`Block`, `Weight`): `keras_block` describes a Keras model, and the matcher runs without
TensorFlow.

Example:

```python
matching = match_blocks(keras_block(probe), keras_block(simclr))
matching.loaded, matching.total        # 12, 14
[(block.name, block.loaded, block.total) for block in matching.blocks]   # [("encoder", 12, 12), ("head", 0, 2)]
```
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Optional

from experiments_manager.utils.layer_names import holding_attributes, shown_name


@dataclasses.dataclass(frozen=True)
class Weight:
    """One weight of a block.

    Args:
        path: the blocks holding it from the top, as the code names them, then its name (`encoder/dense/kernel`).
        shape: its shape.
        handle: the variable itself (default None; the matcher never reads it).
    """

    path: str
    shape: tuple[int, ...]
    handle: Any = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class Block:
    """A sub-model or a layer: its name, its own weights in order, its sub-blocks.

    Args:
        name: the block's Keras name.
        weights: the weights it holds itself (default none).
        children: its sub-blocks, in order (default none).
        aliases: the attributes holding it in its parent (a subclass' `self.encoder`) (default none).
    """

    name: str
    weights: tuple[Weight, ...] = ()
    children: tuple[Block, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> set[str]:
        return {self.name, *self.aliases}

    def all_weights(self) -> list[Weight]:
        """Its own weights, then its sub-blocks', depth first."""
        return list(self.weights) + [weight for child in self.children for weight in child.all_weights()]

    def descendants(self) -> Iterator[Block]:
        """Every block below it, depth first."""
        for child in self.children:
            yield child
            yield from child.descendants()


@dataclasses.dataclass(frozen=True)
class BlockCount:
    """What a top-level block of the new model took: `loaded` of its `total` weights."""

    name: str
    loaded: int
    total: int


@dataclasses.dataclass(frozen=True)
class Matching:
    """The weights of the new model matched to the source's, and those left as the new model made them.

    Attributes:
        pairs: (the new model's weight, the source's weight it takes), in the new model's order.
        unmatched: (the new model's weight, why no weight of the source fits it), shape differences first.
        blocks: per top-level block of the new model holding weights, what it took.
        shared: the names of the new model's blocks found in the source (their weights fitting or not).
    """

    pairs: tuple[tuple[Weight, Weight], ...]
    unmatched: tuple[tuple[Weight, str], ...]
    blocks: tuple[BlockCount, ...]
    shared: tuple[str, ...] = ()

    @property
    def loaded(self) -> int:
        return len(self.pairs)

    @property
    def total(self) -> int:
        return len(self.pairs) + len(self.unmatched)

    @property
    def reasons(self) -> list[str]:
        """One phrase per weight left as the new model made it (`head/kernel: expected ... got ...`)."""
        return [why for _, why in self.unmatched]


_SHAPE_DIFFERS = "expected the new model's shape"


def match_blocks(new: Block, source: Block) -> Matching:
    """Matches the weights of the model `new` describes to those of `source` (see the module's docstring).

    Args:
        new: the new model's `Block` (its own name is not matched: the models' names differ).
        source: the source model's `Block`.

    Returns:
        the `Matching`.
    """
    index: dict[str, dict[int, Block]] = {}
    for block in source.descendants():
        for name in block.names:
            index.setdefault(name, {})[id(block)] = block
    pairs: list[tuple[Weight, Weight]] = []
    unmatched: list[tuple[Weight, str]] = []
    shared: list[str] = []
    _own(new, source, pairs, unmatched)  # the models' own weights (a subclass' variables), if any
    for child in new.children:
        _visit(child, index, pairs, unmatched, shared)
    unmatched.sort(key=lambda entry: _SHAPE_DIFFERS not in entry[1])  # stable: the model's order within each kind
    taken = {id(weight) for weight, _ in pairs}
    return Matching(tuple(pairs), tuple(unmatched), block_counts(new, lambda weight: id(weight) in taken),
                    tuple(shared))


def block_counts(model: Block, loaded: Callable[[Weight], bool]) -> tuple[BlockCount, ...]:
    """Per top-level block of `model` holding weights (its own weights counted under its name), how many of them
    `loaded` says were loaded."""
    tops = ([Block(model.name, model.weights)] if model.weights else []) + list(model.children)
    counts = []
    for top in tops:
        weights = top.all_weights()
        if weights:
            counts.append(BlockCount(top.name, sum(1 for weight in weights if loaded(weight)), len(weights)))
    return tuple(counts)


def _visit(block: Block, index: dict[str, dict[int, Block]], pairs: list[tuple[Weight, Weight]],
           unmatched: list[tuple[Weight, str]], shared: list[str]) -> None:
    weights = block.all_weights()
    if not weights:
        return
    found: dict[int, Block] = {}
    for name in sorted(block.names):
        found.update(index.get(name, {}))
    if len(found) > 1:  # not guessed
        names = " or ".join(repr(name) for name in sorted(block.names) if name in index)
        unmatched.extend((weight, f"{weight.path}: {len(found)} blocks named {names} in the source")
                         for weight in weights)
        return
    match = next(iter(found.values()), None)
    if match is not None:
        shared.append(block.name)
        theirs = match.all_weights()
        if [w.shape for w in weights] == [w.shape for w in theirs]:
            pairs.extend(zip(weights, theirs))
            return
    _own(block, match, pairs, unmatched)
    for child in block.children:
        _visit(child, index, pairs, unmatched, shared)


def _own(block: Block, match: Optional[Block], pairs: list[tuple[Weight, Weight]],
         unmatched: list[tuple[Weight, str]]) -> None:
    """The block's own weights: taken from `match`'s own when their shapes are the same, else each said."""
    if not block.weights:
        return
    if match is None:
        names = " or ".join(repr(name) for name in sorted(block.names))
        unmatched.extend((weight, f"{weight.path}: no block named {names} in the source") for weight in block.weights)
        return
    theirs = match.weights
    if [w.shape for w in block.weights] == [w.shape for w in theirs]:
        pairs.extend(zip(block.weights, theirs))
        return
    for position, weight in enumerate(block.weights):
        if position >= len(theirs):
            unmatched.append((weight, f"{weight.path}: expected a weight of shape {weight.shape}, the source's "
                                      f"{match.name!r} has none there"))
        elif theirs[position].shape != weight.shape:
            unmatched.append((weight, f"{weight.path}: {_SHAPE_DIFFERS} {weight.shape}, got {theirs[position].shape}"))
        else:
            unmatched.append((weight, f"{weight.path}: left with its layer (another of its weights does not fit)"))


def keras_block(layer: Any, aliases: tuple[str, ...] = (), seen: Optional[set[int]] = None,
                prefix: str = "") -> Block:
    """The `Block` of a Keras 3 layer or model: its weights (trainable, then not), its sub-layers (a layer used twice
    counted at its first place), the attributes of `layer` holding each sub-layer as its aliases.

    Args:
        layer: a built Keras layer or model.
        aliases: the attributes holding `layer` in its parent (default none).
        seen: the layers described already (default: a new walk).
        prefix: the names of the blocks above `layer` and its own, each as the code names it (the attribute
            holding it, else its Keras name: `utils/layer_names.py`), that its weights' paths start with
            (default '': the model itself, whose sub-blocks start the paths: `projector/dense/kernel`).
    """
    seen = set() if seen is None else seen
    seen.add(id(layer))
    own = list(getattr(layer, "_trainable_variables", [])) + list(getattr(layer, "_non_trainable_variables", []))
    attributes = holding_attributes(layer)
    children = []
    for child in layer._flatten_layers(include_self=False, recursive=False):
        if id(child) not in seen:
            children.append(keras_block(child, tuple(attributes.get(id(child), ())), seen,
                                        f"{prefix}{shown_name(layer, child, attributes)}/"))
    return Block(str(layer.name), tuple(Weight(f"{prefix}{variable.name}", tuple(int(size) for size in variable.shape),
                                               variable) for variable in own), tuple(children), aliases)
