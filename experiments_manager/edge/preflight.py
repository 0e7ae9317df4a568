"""What a version's served signature needs that an edge format lacks, found before converting: string inputs, string
ops and lookup tables (a text model's vectoriser), named by the Keras layers that hold them.

`needs_of` reads the version's `saved_model.pb` only (no TensorFlow graph is built): the `serving_default`
signature's inputs, and the ops of every function its outputs are computed by (not the tables' initializers).
`layers_of` names the model's layers those ops come from: their name scopes are the layers' names, which the model
file rebuilds (`export` builds the model only when a version needs something). ONNX (tf2onnx's standard opset) has neither the string ops nor the TensorFlow lookup
tables, so such a version is refused before anything is converted or written; LiteRT runs lookup tables as builtin
ops and string ops as Flex ops only (`--allow-flex-ops`), which its converter reports.

Example:

```python
needs = needs_of("RUN/exported_models/3")
needs.string_inputs       # ['text']
needs.ops                 # ['LookupTableFindV2', 'StaticRegexReplace', 'StringLower', 'StringSplitV2']
```
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Iterable

from experiments_manager.edge.runtime import SIGNATURE

# TensorFlow's lookup-table ops (a vocabulary, a hash table), by op type
TABLE_OPS = frozenset({"HashTableV2", "HashTable", "MutableHashTableV2", "MutableHashTableOfTensorsV2",
                       "MutableDenseHashTableV2", "LookupTableFindV2", "LookupTableFind", "LookupTableSizeV2",
                       "LookupTableImportV2", "LookupTableInsertV2", "LookupTableExportV2", "LookupTableRemoveV2",
                       "InitializeTableV2", "InitializeTableFromTextFileV2", "AnonymousHashTable"})
# ops on strings: their types' prefixes and names (text standardisation, splitting, hashing, decoding)
_STRING_OP = re.compile(r"^(String|Regex|StaticRegex|Unicode|Substr|ReduceJoin|AsString|DecodeBase64|EncodeBase64)")
_DT_STRING = 7  # types_pb2.DT_STRING
_CALL_ATTRIBUTES = ("f", "then_branch", "else_branch", "body", "cond", "branches")
_UNIQUE_SUFFIX = re.compile(r"_\d+$")  # what TensorFlow adds to a name scope used twice in one graph


@dataclasses.dataclass(frozen=True)
class Needs:
    """What a version's `serving_default` takes and runs that some edge formats lack.

    Args:
        string_inputs: the names of its string inputs.
        ops: the op types on strings and lookup tables it runs, sorted.
        scopes: the name scopes of those ops (the layers' names, possibly with `_N` added), sorted.
    """

    string_inputs: list[str]
    ops: list[str]
    scopes: list[str]

    def __bool__(self) -> bool:
        return bool(self.string_inputs or self.ops)

    @property
    def tables(self) -> bool:
        """Whether it looks values up in a TensorFlow lookup table."""
        return any(op in TABLE_OPS for op in self.ops)


def needs_of(folder: "str | Path") -> Needs:
    """The string inputs, string ops and lookup-table ops of the SavedModel at `folder`'s `serving_default`.

    Args:
        folder: a version's SavedModel folder.

    Example:

    ```python
    if needs_of("RUN/exported_models/3"): ...
    ```
    """
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((Path(folder) / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0]
    signature = graph.signature_def[SIGNATURE]
    strings = sorted(name for name, info in signature.inputs.items() if info.dtype == _DT_STRING)
    library = {function.signature.name: function for function in graph.graph_def.library.function}
    ops: set[str] = set()
    scopes: set[str] = set()
    seen: set[str] = set()
    outputs = {info.name.split(":")[0].lstrip("^") for info in signature.outputs.values()}
    queue = [name for node in graph.graph_def.node if node.name in outputs for name in _called(node)]
    while queue:
        name = queue.pop()
        if name in seen or name not in library:
            continue
        seen.add(name)
        for node in library[name].node_def:
            queue += _called(node)
            if node.op in TABLE_OPS or _STRING_OP.match(node.op):
                ops.add(node.op)
                if "/" in node.name:
                    scopes.add(node.name.rsplit("/", 1)[0])
    return Needs(strings, sorted(ops), sorted(scopes))


def _called(node: Any) -> list[str]:
    """The functions a node calls (a function call, a branch, a loop's body)."""
    names = []
    for attribute in _CALL_ATTRIBUTES:
        if attribute in node.attr:
            value = node.attr[attribute]
            names += [value.func.name] if value.HasField("func") else [item.name for item in value.list.func]
    return names


def layers_of(model: Any, needs: Needs) -> list[str]:
    """'layer NAME (Class)' for each of `model`'s layers whose name is in the scopes of `needs`' ops, in the model's
    order (for the model's own ops or none found: the scopes themselves).

    Example:

    ```python
    layers_of(model, needs)      # ["layer 'vectorize' (TextVectorization)"]
    ```
    """
    segments = {segment for scope in needs.scopes for segment in scope.split("/")}
    found = []
    for layer in _layers(model):
        if layer.name in segments or any(_UNIQUE_SUFFIX.sub("", segment) == layer.name for segment in segments):
            found.append(f"layer {layer.name!r} ({type(layer).__name__})")
    return found or [f"the ops under {scope!r}" for scope in needs.scopes[:3]]


def _layers(model: Any) -> Iterable[Any]:
    """The model's layers, outermost first (a layer inside another is not listed again)."""
    return [layer for layer in getattr(model, "layers", []) if layer is not model]
