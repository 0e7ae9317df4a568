"""The model of a run: built from the settings' model file, compiled with the settings' loss and metrics."""

from __future__ import annotations

import collections
import contextlib
import copy
import importlib.util
import logging
import math
import sys
import uuid
from typing import TYPE_CHECKING, Any, Iterator, Optional, cast

from experiments_manager.utils.optimizers import inner_optimizer
from experiments_manager.settings.loader import MODEL_MODULE_PREFIX
from experiments_manager.settings.script import make_importable
from experiments_manager.utils.errors import UserInputError
from experiments_manager.keras2.metrics import keras2_metrics

if TYPE_CHECKING:
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec

    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings.loader import Settings

_LOG = logging.getLogger(__name__)


def build_model(settings: Settings) -> Any:
    """Imports the model file under a unique name and calls `model(usersettings)`, TensorFlow ops on the model's
    symbolic tensors made layers as Keras 2 made them (`keras2/tf_ops.py`).

    Example:

    ```python
    model = build_model(load_settings("examples/regression/mysettings_curve_fitting.py"))
    ```
    """
    import keras

    spec = cast("ModuleSpec", importlib.util.spec_from_file_location(f"{MODEL_MODULE_PREFIX}{uuid.uuid4().hex}",
                                                                     settings.model_file))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    settings.model_modules.append(spec.name)  # removed by `settings.release()`
    module.__file__ = str(settings.model_script.absolute())  # as `python model_file` says it (see settings/script.py)
    make_importable(settings.model_script.parent)
    from experiments_manager.keras2.tf_ops import tf_ops_as_layers

    with tf_ops_as_layers():  # `tf.concat(...)` on the model's tensors: a layer, as Keras 2 made it
        cast("Loader", spec.loader).exec_module(module)
        model = module.model(settings.module)
    if not isinstance(model, keras.Model):
        raise UserInputError(f"{settings.model_file.name}: model: expected a keras.Model, got {type(model).__name__}")
    return model


def compiled_metrics(settings: Settings, model: Any, loss: Any) -> Any:
    """The settings' metrics for `loss`, with Keras 2's metric semantics (see `keras2/metrics.py`); None for none
    (Keras builds no empty metrics container that a model's own `train_step` would leave unbuilt)."""
    return keras2_metrics(settings.training.get_metrics(model, loss), model, settings.path.name) or None


def compile_for_evaluation(settings: Settings, model: Any = None) -> Any:
    """The settings' model compiled with its loss and metrics only: what a federation's server evaluates, and
    `evaluate` (a loaded version's model, given as `model`; default None: a new one built)."""
    model = build_model(settings) if model is None else model
    loss = settings.training.get_total_loss(model)
    model.compile(loss=loss, loss_weights=settings.training.loss_weights,
                  metrics=compiled_metrics(settings, model, loss))
    return model


def plateau_can_set(optimizer: Any, learning_rate: Any) -> bool:
    """LR-on-plateau only for a plain learning rate: a schedule owns it otherwise (the settings' own, or
    a Keras 2 legacy optimizer's `decay`), and Keras refuses to set it."""
    return isinstance(learning_rate, (int, float)) and fixed_learning_rate(optimizer) is not None


def record_learning_rate(experiment: Experiment, settings: Settings, optimizer: Any, asked: Any) -> None:
    """Records in run.json the rate `optimizer` trains at, and says so when it is not `asked` (what
    `get_learningRate()` returned: a Keras 2 `lr=` that Keras ignored, say): hparams and sweeps would record the
    other one. Nothing for a schedule."""
    rate = fixed_learning_rate(optimizer)
    if rate is None:
        return  # a schedule
    experiment.record.learning_rate(rate)
    if isinstance(asked, (int, float)) and not math.isclose(rate, asked, rel_tol=1e-5):
        _LOG.warning("%s: get_optimizer: the optimizer trains at learning_rate=%g, not at %g from "
                     "get_learningRate() (which hparams and sweeps record); pass it the learning_rate argument",
                     settings.path.name, rate, asked)


def fixed_learning_rate(optimizer: Any) -> Optional[float]:
    """The optimizer's learning rate as a float, or None when a schedule gives it."""
    rate = inner_optimizer(optimizer).get_config().get("learning_rate")
    return float(rate) if isinstance(rate, (int, float)) else None


@contextlib.contextmanager
def precision_policy(mixed: bool) -> Iterator[None]:
    """Sets Keras' global dtype policy to mixed_float16 for the block (when `mixed`), then restores the policy that
    was in force before it, also when code run in the block (a settings file calling
    `keras.mixed_precision.set_global_policy`) set another."""
    with dtype_policy("mixed_float16" if mixed else None):
        yield


@contextlib.contextmanager
def dtype_policy(name: Optional[str]) -> Iterator[None]:
    """Sets Keras' global dtype policy to `name` for the block, then restores the one before (also when code run in
    the block set another: a settings file calling `keras.mixed_precision.set_global_policy`).

    Args:
        name: a Keras policy name (`"float32"`, `"mixed_float16"`), or None: the policy in force is kept.

    Example:

    ```python
    with dtype_policy("float32"):
        model = build_model(settings)    # float32, whatever the caller's policy
    ```
    """
    import keras

    previous = keras.config.dtype_policy()
    if name is not None:
        keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def computes_in_half_precision(model: Any) -> bool:
    """True when a layer of `model` computes in float16 or bfloat16 (a mixed-precision policy, however it was set:
    `enable_mixed_precision`, or `keras.mixed_precision.set_global_policy` in the settings or the model file)."""
    flatten = getattr(model, "_flatten_layers", None)
    layers = flatten(include_self=True, recursive=True) if flatten else [model]
    return any(str(getattr(layer, "compute_dtype", "float32")) in ("float16", "bfloat16") for layer in layers)


@contextlib.contextmanager
def keras_names_kept(fresh: bool = False) -> Iterator[None]:
    """Keras numbers auto-named layers and inputs process-wide (`dense`, `dense_1`, ...): a model built in the block
    would shift the names of the models built after it (the dry build's, the trained model's exported signature's
    input names and the history's per-output columns). Restores the numbering after the block.

    Args:
        fresh: number from the start within the block (default False: go on from the numbering as it is), as a
            command-line training process built the run's model: its exported input names come back.
    """
    try:
        from keras.src.backend.common import global_state
    except ImportError:  # another Keras layout: names may shift, nothing else changes
        yield
        return
    saved = copy.deepcopy(global_state.get_global_attribute("object_name_uids"))
    if fresh:
        global_state.set_global_attribute("object_name_uids", collections.defaultdict(int))
    try:
        yield
    finally:
        global_state.set_global_attribute("object_name_uids",
                                          saved if saved is not None else collections.defaultdict(int))
