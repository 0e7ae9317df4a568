"""What the settings name, checked against the model the dry build made (`dry_build.py` calls each, before any
experiment folder exists; each problem is one line in `problems`).

- `check_monitor`: `monitored_loss_name` is a value an epoch logs (each output's too, with several outputs);
- `check_loss_weights`, `check_output_keys`: `loss_weights` (and a dict of losses or metrics) name the model's
  outputs, or give one weight per output;
- `check_class_names`: `class_names` are the dataset's own, in its order, when it has them;
- `one_train_step`: a model's own `train_step` runs once (its errors named by the model file's line);
- `check_checkpoint_fits`: a resume of changed code can continue the run from its checkpoint.

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


def has_own_train_step(model: Any) -> bool:
    """True for a model whose class defines its own `train_step` (a VAE's, a GAN's)."""
    import keras

    return type(model).train_step is not keras.Model.train_step


def one_train_step(settings: Settings, model: Any, optimizer: Any) -> None:
    """A model's own `train_step` run once on the first training batch (the model compiled with the settings'
    optimizer): an error in it is one line naming the model file's line, before any folder exists, not a failed run
    in epoch 1."""
    from experiments_manager.settings.pipeline import settings_pipeline

    pipeline = settings_pipeline(settings, True)
    if not pipeline.restartable:
        return
    model.compile(optimizer=optimizer, loss=model.loss, loss_weights=settings.training.loss_weights)
    model.fit(pipeline.dataset.take(1), epochs=1, verbose=0)  # the step gets its batch as fit gives it


def check_class_names(problems: list[str], settings: Settings, own: Any) -> None:
    """The settings' `class_names` are the dataset's own when it has them (`image_dataset_from_directory` numbers
    its class folders in sorted order, or in the order its `class_names` argument gives): reports would otherwise
    name every class wrongly."""
    given = settings.data.class_names
    if given is None or not isinstance(own, (list, tuple)) or list(own) == list(given):
        return
    problems.append(f"{settings.path.name}: class_names: expected the dataset's own class names in its order "
                    f"({', '.join(map(str, own))}), got {', '.join(map(str, given))}: its class ids number them in "
                    "that order; give that order, or pass class_names= to image_dataset_from_directory")


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
    """`loss_weights` names the model's outputs (a dict), or gives one weight per output (a list): Keras ignores a
    key that names no output, and that output's loss would count with weight 1."""
    weights = settings.training.loss_weights
    names = output_names(model)
    if weights is None or not names:
        return
    if isinstance(weights, dict):
        check_output_keys(problems, settings, model, "loss_weights", weights)
    elif len(weights) != len(names):
        problems.append(f"{settings.path.name}: loss_weights: expected one weight per output ({len(names)}: "
                        f"{', '.join(names)}), got {len(weights)}")


def check_output_keys(problems: list[str], settings: Settings, model: Any, where: str, given: Any) -> None:
    """A dict by output name (`loss_weights`, `get_metrics`' or `get_total_loss`' return) names only outputs the
    model has: Keras ignores the others (a metric never computed, a loss weighted 1)."""
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


def check_checkpoint_fits(problems: list[str], run: Experiment, model: Any) -> None:
    """The weights of the checkpoint a resume of `run` continues from, compared with the (changed) model's."""
    from experiments_manager.export.keras_weights import differences
    from experiments_manager.run.checkpointing import WEIGHTS_FILE, Checkpointer

    checkpoint = Checkpointer(run.checkpoints_dir).latest()
    if checkpoint is None:
        return  # the resume trains from the first epoch
    differing = differences(checkpoint / WEIGHTS_FILE, model)
    if differing:
        more = f", {len(differing) - 1} more" if len(differing) > 1 else ""
        problems.append(f"{run.root}: {checkpoint.name}: the changed model cannot continue the run from its checkpoint "
                        f"({differing[0]}{more}): start a new run from its weights with --init-from {run.root} "
                        "(and --skip-mismatch for the weights that changed shape)")
