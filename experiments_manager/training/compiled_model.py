"""The model as training compiles it: built from the model file, compiled with the settings' loss, optimizer (EMA
attached), loss weights and metrics, and built as Keras' `fit` builds it from its first batch.

The trainer trains this model; the dry build of a resume of changed code builds it the same way to compare it with
the run's checkpoint (`model_checks.check_checkpoint_fits`): one code path, so the comparison sees the variables the
restore will see.

Example:

```python
model, learning_rate, averages = compiled_for_training(settings, inputs.train)
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from experiments_manager.training.ema import WeightAverages
from experiments_manager.training.model import build_model, compiled_metrics
from experiments_manager.utils.own_train_step import has_own_train_step, mark_built_when_its_layers_are

if TYPE_CHECKING:
    from experiments_manager.settings.loader import Settings


def compiled_for_training(settings: Settings, train_data: Any) -> tuple[Any, Any, Optional[WeightAverages]]:
    """The settings' model, compiled and built for training; the settings' functions called in the original order.

    Args:
        settings: the loaded `Settings`.
        train_data: the training `tf.data.Dataset` (its element spec builds a model without `Input`), or None.

    Returns:
        (the compiled model, what `get_learningRate()` returned, the `WeightAverages` attached or None).
    """
    model = build_model(settings)
    learning_rate, averages = compile_as_training_compiles(settings, model, train_data)
    return model, learning_rate, averages


def compile_as_training_compiles(settings: Settings, model: Any,
                                train_data: Any) -> tuple[Any, Optional[WeightAverages]]:
    """Compiles and builds the built `model` as training does: the settings' loss, learning rate, optimizer and
    metrics functions called in the original order, then `compile_for_training`.

    Args:
        settings: the loaded `Settings`.
        model: the settings' model.
        train_data: the training `tf.data.Dataset`, or None.

    Returns:
        (what `get_learningRate()` returned, the `WeightAverages` attached or None).
    """
    loss = settings.training.get_total_loss(model)
    learning_rate = settings.training.get_learning_rate()
    optimizer = settings.training.get_optimizer(model, loss, learning_rate)
    metrics = compiled_metrics(settings, model, loss)
    return learning_rate, compile_for_training(settings, model, loss, optimizer, metrics, train_data)


def compile_for_training(settings: Settings, model: Any, loss: Any, optimizer: Any, metrics: Any,
                         train_data: Any) -> Optional[WeightAverages]:
    """Compiles `model` as training runs it: the settings' optimizer with its EMA attached, the loss, loss weights,
    metrics and XLA choice; then builds it as Keras' `fit` would (`built_as_fit_builds`). Returns the
    `WeightAverages` attached, or None without EMA.

    Args:
        settings: the loaded `Settings`.
        model, loss, optimizer, metrics: what the settings' functions returned (`compiled_metrics` for the metrics).
        train_data: the training `tf.data.Dataset`, or None.
    """
    averages = None
    if settings.training.ema:
        averages = WeightAverages(settings.training.ema_momentum, warmup=settings.training.ema_warmup)
        optimizer = averages.attach(optimizer)
    model.compile(optimizer=optimizer, loss=loss, loss_weights=settings.training.loss_weights, metrics=metrics,
                  jit_compile=settings.runtime.xla)
    built_as_fit_builds(model, train_data)  # a subclassed model's variables, then the optimizer's
    return averages


def built_as_fit_builds(model: Any, dataset: Any) -> None:
    """Builds now, from the training data's element spec, what Keras' `fit` builds from its first batch, as Keras'
    own symbolic build does, then the compiled model's optimizer.

    A model without `keras.Input` (a subclassed model: its first call makes its variables) is built, so that the
    optimizer is built on its variables and a checkpoint or a version can be read into them before `fit`; so are the
    compiled metrics a model's own `train_step` may leave untouched (a VAE's step returning only `{"loss": ...}`:
    Keras would read their results at the first epoch's end before anything built them, and fail). A model with its
    own `train_step` has that step traced (not run): every optimizer it uses is built on what it trains, as `fit`
    builds them, and its call is not assumed to take the batch (a GAN's generator takes noise).

    Args:
        model: the compiled Keras model.
        dataset: the training `tf.data.Dataset`; anything without an element spec (None) skips the symbolic build.
    """
    spec = getattr(dataset, "element_spec", None)
    own_step = has_own_train_step(model)
    if spec is not None and (not model.built or own_step):
        # Keras' symbolic build would build the optimizer on what the call made: an own step's optimizers are built
        # by its trace below, on what the step trains (a projector only the step calls, built by that first call)
        holding_back = own_step and model.optimizer is not None and not model.optimizer.built
        try:
            if holding_back:
                model.optimizer.built = True
            model._symbolic_build(data_batch=spec if isinstance(spec, tuple) else (spec,))
        except (ValueError, RuntimeError, TypeError):
            if not own_step:
                raise
            # its own step decides what the data feeds (a GAN's generator takes noise, not the batch): traced below;
            # the call Keras tried recorded the batch's shapes as the model's input, which a SavedModel would trace
            model._saved_model_inputs_spec = model._saved_model_arg_spec = model._build_shapes_dict = None
        finally:
            if holding_back:
                model.optimizer.built = False
    if spec is not None and own_step:
        _own_train_step_traced(model, spec)  # builds what its step builds: every optimizer, on what it trains
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def _own_train_step_traced(model: Any, spec: Any) -> None:
    """Traces the model's own `train_step` on the training data's spec, without running it: the optimizers Keras
    builds at their first `apply_gradients` (the compiled one and a GAN's second) make their variables for what the
    step trains, as `fit` would, so a checkpoint's values can be read into them before training. A step that cannot be traced so is left to `fit` (a resume then refuses the
    optimizer it could not restore, naming it)."""
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()  # the trainer's, in whose scope the model was compiled

    @tf.function
    def one_step(batch: Any) -> Any:
        return strategy.run(model.train_step, args=(batch,))

    try:
        one_step.get_concrete_function(spec)
    except Exception:  # noqa: BLE001 - the user's step: `fit` runs it and says what is wrong
        return
    mark_built_when_its_layers_are(model)
