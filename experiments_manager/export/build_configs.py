"""How each layer of a version's model was built: what a model rebuilt from its file needs for the blocks only its
training step builds.

Keras lets a block be built by its first call: a subclass' `self.projector = keras.Sequential([...])` without
`keras.Input`, called only in `train_step`. A model rebuilt from the run's model file (to evaluate or load a
version, to start a run from it) builds what its served function calls; such a block stays unbuilt, holds no
weights, and the version's weights have nowhere to go. Each version therefore records, beside its Keras weights
file, every layer's Keras build config (`layer.get_build_config()`: the input shapes it was built for, what Keras'
own `.keras` format records) by its place in the model (`assets.extra/build_configs.json`); before a version is
read into a rebuilt model, each layer not built yet is built from the config of its place
(`layer.build_from_config`), as Keras' own loading does.

A place is the path of positions from the model down to the layer, each with the layer's class, input layers left
out (a Sequential built by its first call gains one): `1:Sequential/0:Dense`, the same for the same code in any
process, whatever names Keras numbered.

Example:

```python
write_build_configs(version_folder, model)    # at export
build_as_recorded(rebuilt_model, version_folder)   # before the version's weights are read: ['1:Sequential']
```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

BUILD_CONFIGS_FILE = "assets.extra/build_configs.json"


def layer_places(model: Any) -> Iterator[tuple[str, Any]]:
    """(place, layer) of every layer below `model`, parents before their layers."""

    def below(layer: Any, prefix: str) -> Iterator[tuple[str, Any]]:
        children = [child for child in layer._flatten_layers(include_self=False, recursive=False)
                    if type(child).__name__ != "InputLayer"]
        for position, child in enumerate(children):
            place = f"{prefix}{position}:{type(child).__name__}"
            yield place, child
            yield from below(child, place + "/")

    yield from below(model, "")


def layer_build_configs(model: Any) -> dict[str, Any]:
    """Each built layer's Keras build config by its place (layers built without one left out)."""
    configs = {}
    for place, layer in layer_places(model):
        config = layer.get_build_config() if layer.built else None
        if config:
            configs[place] = config
    return configs


def write_build_configs(version_folder: "str | Path", model: Any) -> None:
    """Writes `model`'s layers' build configs into a version's (temporary) folder."""
    path = Path(version_folder) / BUILD_CONFIGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(layer_build_configs(model), sort_keys=True) + "\n")


def build_as_recorded(model: Any, version_folder: "str | Path") -> "list[str] | None":
    """Builds each layer of `model` not built yet from the build config the version records at its place.

    Args:
        model: the rebuilt model, its served function traced.
        version_folder: the version's folder (checked whole by the caller).

    Returns:
        the places built (their layers built theirs too); a layer whose build fails is left unbuilt (reading the
        version's weights then names the weights it lacks, in one line). None for a version without the file (an
        earlier engine's): nothing built.
    """
    from experiments_manager.utils.own_train_step import mark_built_when_its_layers_are

    path = Path(version_folder) / BUILD_CONFIGS_FILE
    if not path.is_file():
        return None
    recorded = json.loads(path.read_text())
    built = []
    for place, layer in layer_places(model):
        if not layer.built and isinstance(recorded, dict) and isinstance(recorded.get(place), dict):
            try:
                layer.build_from_config(recorded[place])
            except Exception:  # noqa: BLE001 - left unbuilt: reading the weights then names what it lacks
                continue
            built.append(place)
    if built:
        mark_built_when_its_layers_are(model)
    return built
