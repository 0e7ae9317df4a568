"""What the settings name, checked against the model the dry build made (`dry_build.py` calls each, before any
experiment folder exists; each problem is one line in `problems`).

- `check_monitor`: `monitored_loss_name` is a value an epoch logs (each output's too, with several outputs);
- `check_loss_weights`, `check_output_keys`: `loss_weights` (and a dict of losses) name every output of the model,
  or give one weight per output;
- `check_class_names`: `class_names` are not the dataset's own names in another order, nor another count of them;
- `one_train_step`: a model's own `train_step` runs once (its errors named by the model file's line);
- `check_layers_made_by_the_step`: no layer holding weights is made by that step (a rebuilt model would lack it);
- `check_checkpoint_fits`: a resume of changed code can continue the run from its checkpoint (weights and
  optimizer, as its training would build them).

Example:

```python
problems: list[str] = []
check_loss_weights(problems, settings, model)   # ["s.py: loss_weights: expected the model's output names ..."]
```
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from experiments_manager.settings.monitor import raw_name

if TYPE_CHECKING:
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings.loader import Settings


def one_train_step(settings: Settings, model: Any, optimizer: Any) -> set[str]:
    """A model's own `train_step` run once on the first training batch (the model compiled with the settings'
    optimizer): an error in it is one line naming the model file's line, before any folder exists, not a failed run
    in epoch 1. Returns the names the step logs (a VAE's `kl_loss`: values `monitored_loss_name` may name)."""
    from experiments_manager.settings.pipeline import settings_pipeline

    pipeline = settings_pipeline(settings, True)
    if not pipeline.restartable:
        return set()
    model.compile(optimizer=optimizer, loss=model.loss, loss_weights=settings.training.loss_weights)
    history = model.fit(pipeline.dataset.take(1), epochs=1, verbose=0)  # the step gets its batch as fit gives it
    return set(history.history)


def check_layers_made_by_the_step(problems: list[str], settings: Settings, model: Any, constructed: set[int]) -> None:
    """A model's own `train_step` that makes a layer holding weights (`self.head = Dense(...)` in the step, not in
    `__init__` nor the model's `build`): a model rebuilt from the model file to read a version has no such layer,
    so no version could be loaded; one line naming it and the fix (`constructed`: the ids of the model's layers
    before the step ran)."""
    import keras

    if type(model).build is not keras.Model.build:
        return  # its own build makes them, and a rebuilt model's first call runs it
    attributes = {id(value): name for name, value in vars(model).items() if not name.startswith("_")}
    for layer in model._flatten_layers(include_self=False, recursive=False):
        if id(layer) not in constructed and layer.weights:
            held = f"self.{attributes[id(layer)]}" if id(layer) in attributes else f"the layer {layer.name!r}"
            problems.append(f"{settings.model_file.name}: train_step: makes {held} (a {type(layer).__name__} with "
                            "weights) on its first call: a model rebuilt from the model file to load a version "
                            "would not have it; make it in __init__ (a Sequential without keras.Input there is "
                            "built by its first call)")


def check_class_names(problems: list[str], settings: Settings, own: Any) -> None:
    """The settings' `class_names` agree with the dataset's own when it has them (`image_dataset_from_directory`
    numbers its class folders in sorted order, or in the order of its `class_names` argument): the same names in
    another order, or another number of classes, would name every class of the reports wrongly. Other names (display
    names for folders named by ids) are the settings' to give."""
    given = settings.data.class_names
    if given is None or not isinstance(own, (list, tuple)) or list(own) == list(given):
        return
    if sorted(map(str, own)) == sorted(map(str, given)):
        problems.append(f"{settings.path.name}: class_names: expected the dataset's own class names in its order "
                        f"({', '.join(map(str, own))}), got {', '.join(map(str, given))}: its class ids number them "
                        "in that order; give that order, or pass class_names= to image_dataset_from_directory")
    elif len(own) != len(given):
        problems.append(f"{settings.path.name}: class_names: expected a name for each of the dataset's {len(own)} "
                        f"classes ({', '.join(map(str, own))}), got {len(given)}")


def check_monitor(problems: list[str], settings: Settings, model: Any, logged: set[str]) -> None:
    """`monitored_loss_name` is a value an epoch logs: the loss or a metric (what the dry batch computed), its
    `val_` and `val_..._raw` forms, or `learning_rate`; checked when nothing else may log values (no
    `addon_callbacks`, or none returned). A model with several outputs logs each output's loss and metrics under
    its name (`value_loss`, `value_mae`)."""
    monitor = settings.training.monitor
    if not logged or adds_callbacks(settings, model):
        return
    names = {"loss", *logged}
    candidates = {*names, *(f"val_{name}" for name in names), "learning_rate"}
    if settings.training.validate_raw_weights:
        candidates |= {raw_name(f"val_{name}") for name in names}
    if monitor not in candidates:
        close = difflib.get_close_matches(monitor, sorted(candidates), n=1)
        problems.append(f"{settings.path.name}: monitored_loss_name: expected one of the values an epoch logs "
                        f"({', '.join(sorted(candidates))}), got {monitor!r}"
                        + (f" (did you mean {close[0]!r}?)" if close else ""))


def check_loss_weights(problems: list[str], settings: Settings, model: Any) -> None:
    """`loss_weights` gives each output of the model its weight: a dict naming every output, or a list of one weight
    per output (Keras refuses another dict at the first batch, in words about the loss)."""
    weights = settings.training.loss_weights
    names = output_names(model)
    if weights is None or not names:
        return
    if isinstance(weights, dict):
        check_output_keys(problems, settings, model, "loss_weights", weights)
        missing = [name for name in names if name not in weights]
        if missing and all(key in names for key in weights):
            problems.append(f"{settings.path.name}: loss_weights: expected a weight for every output "
                            f"({', '.join(names)}), got none for {', '.join(map(repr, missing))}")
    elif len(weights) != len(names):
        problems.append(f"{settings.path.name}: loss_weights: expected one weight per output ({len(names)}: "
                        f"{', '.join(names)}), got {len(weights)}")


def check_output_keys(problems: list[str], settings: Settings, model: Any, where: str, given: Any) -> None:
    """A dict by output name (`loss_weights`, `get_total_loss`' return) names only outputs the model has (Keras
    refuses the others at the first batch, in words that do not name the key)."""
    names = output_names(model)
    if not isinstance(given, dict) or not names:
        return
    unknown = [key for key in given if key not in names]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), names, n=1)
        problems.append(f"{settings.path.name}: {where}: expected the model's output names ({', '.join(names)}) as "
                        f"keys, got {unknown[0]!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))


def output_names(model: Any) -> list[str]:
    """The names Keras matches a dict of losses, metrics or loss weights against: a dict of outputs' keys (sorted,
    as Keras flattens them), else the output layers' names; [] for a model without symbolic outputs."""
    try:
        structure = model.output
    except (AttributeError, ValueError):  # a subclassed model: no symbolic outputs
        return []
    return sorted(structure) if isinstance(structure, dict) else list(getattr(model, "output_names", None) or [])


def adds_callbacks(settings: Settings, model: Any) -> bool:
    """True when the settings' `addon_callbacks` gives callbacks (which may log values of their own)."""
    if settings.training.addon_callbacks is None:
        return False
    try:
        callbacks = settings.training.addon_callbacks(model, None, None)
    except Exception:  # noqa: BLE001 - called again, and reported, when training builds its callbacks
        return True
    return bool(callbacks)


def check_checkpoint_fits(problems: list[str], run: Experiment, settings: Settings) -> None:
    """The checkpoint a resume of `run` continues from, compared with the model and optimizer the (changed) settings
    build for training (`compiled_model.compiled_for_training`, the trainer's own path): the weights file's paths
    and shapes, then the optimizer's variables (an optimizer, EMA or mixed precision switched)."""
    from experiments_manager.export.keras_weights import differences
    from experiments_manager.run.checkpointing import (WEIGHTS_FILE, Checkpointer, optimizer_mismatch,
                                                       saved_optimizer_shapes)
    from experiments_manager.settings.pipeline import settings_pipeline
    from experiments_manager.training.compiled_model import compiled_for_training

    checkpoint = Checkpointer(run.checkpoints_dir).latest()
    if checkpoint is None:
        return  # the resume trains from the first epoch
    data = None if settings.kafka.enabled else settings_pipeline(settings, True).dataset
    model, _, _ = compiled_for_training(settings, data)
    try:
        differing = differences(checkpoint / WEIGHTS_FILE, model)
        if not differing and (problem := optimizer_mismatch(saved_optimizer_shapes(checkpoint), model.optimizer)):
            differing = [problem]
    except OSError:  # the checkpoint went meanwhile (pruned by a run still writing): the resume's lease says so
        return
    if differing:
        more = f", {len(differing) - 1} more" if len(differing) > 1 else ""
        problems.append(f"{run.root}: {checkpoint.name}: the changed code cannot continue the run from its checkpoint "
                        f"({differing[0]}{more}): start a new run from its weights with --init-from {run.root} "
                        "(and --skip-mismatch for the weights that changed shape)")
