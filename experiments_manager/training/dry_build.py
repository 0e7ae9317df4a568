"""Everything a settings file defines, built and checked once before the experiment folder exists.

The contract checks names and signatures statically; what the settings' functions return is only known by calling
them. The dry build calls each one (the model file's `model`, `get_total_loss`, `get_learningRate`,
`get_optimizer`, `get_metrics`, `get_input_pipeline` for training and validation, `get_served_module`), runs one
batch of each pipeline through the model, the loss and every metric, traces the served function (and calls it on the
validation batch when that batch fits its signature), and reports every problem at once, one line each, naming the
file, the function and what was expected vs got. A metric Keras computes but whose kind the batch's labels make
meaningless (`categorical_accuracy` on class ids: `metric_kinds.py`) is one of those problems, and so is what the
settings name that the model does not have (`model_checks.py`: the monitored value, `loss_weights`' outputs,
`class_names` against the dataset's, a model's own `train_step` run once, the checkpoint a resume of changed code
continues from, with the model and optimizer its training would build). The served module is saved once into a
temporary folder (removed), as the exporter saves it. Nothing is written in an experiment's folder: a broken
settings file leaves no `failed` experiment folder behind.
"""

from __future__ import annotations

import difflib
import functools
import logging
import tempfile
from typing import TYPE_CHECKING, Any, Callable, Optional

from experiments_manager.export.lean_save import lean_save
from experiments_manager.export.served_module import version_signatures
from experiments_manager.training.built_model import BuiltModel
from experiments_manager.training.model import keras_names_kept, precision_policy
from experiments_manager.utils.own_train_step import has_own_train_step
from experiments_manager.training.model_checks import (check_checkpoint_fits, check_class_names, check_loss_weights,
                                                       check_layers_made_by_the_step, check_monitor,
                                                       check_output_keys, one_train_step)
from experiments_manager.training.problem_lines import described, first_line, structure_of, user_line
from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.export.template import SavedModelTemplate

    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings.loader import Settings
    from experiments_manager.training.fine_tuning import InitialWeights

_LOG = logging.getLogger(__name__)
_FAILED = object()  # what `_called` returns when the call raised (None is a value a function may return)


def dry_build(settings: Settings, initial_weights: Optional[InitialWeights] = None,
              resumed_from: Optional[Experiment] = None) -> None:
    """Builds and checks what `settings` define; raises `UserInputError` with one line per problem.

    Runs after device selection and before any experiment folder exists. Skipped by multi-worker runs, whose
    strategy must exist before any TensorFlow op.

    Args:
        settings: the loaded `Settings`.
        initial_weights: a fine-tuned run's `InitialWeights` (default None), loaded into the model once: a version
            whose weights do not fit it is one line.
        resumed_from: the run a resume with changed code continues (default None): its newest checkpoint's weights
            are compared with the model's, and a checkpoint the model cannot take is one line (the run untouched).

    Example:

    ```python
    dry_build(load_settings("mysettings.py"))  # error: mysettings.py: get_optimizer: expected a Keras optimizer...
    ```
    """
    # the trained model gets the auto-names it would have had without the dry build; it is built as training builds
    # it, under the settings' precision policy
    with keras_names_kept(), precision_policy(settings.runtime.mixed_precision):
        _build_and_check(settings, initial_weights, resumed_from)


class OwnTrainStep(Exception):
    """The model trains by its own `train_step`, which the check runs once: it is checked on a model of its own
    (`dry_build`), not on the one that trains."""


def checked_training_model(settings: Settings, train_data: Any,
                           initial_weights: Optional[InitialWeights] = None) -> BuiltModel:
    """The model a new run trains: built and compiled as `compiled_for_training` builds it, checked as `dry_build`
    checks a model (one line per problem), its served module saved once into a temporary folder, that save kept as
    the template of the run's versions. Call it where training builds its model (seeded, under the strategy's scope
    and the precision policy), before the run's folder exists.

    Args:
        settings: the loaded `Settings`.
        train_data: the run's training `tf.data.Dataset` (a model without `Input` is built from its element spec).
        initial_weights: a fine-tuned run's `InitialWeights` (default None), loaded into the model.

    Raises:
        UserInputError: one line per problem.
        OwnTrainStep: the model has its own `train_step` (nothing checked: use `dry_build`).
    """
    checked = _build_and_check(settings, initial_weights, train_data=train_data, for_training=True)
    assert checked is not None  # (for training: the model, or a raise)
    return checked


def _build_and_check(settings: Settings, initial_weights: Optional[InitialWeights] = None,
                     resumed_from: Optional[Experiment] = None, train_data: Any = None,
                     for_training: bool = False) -> Optional[BuiltModel]:
    import keras

    from experiments_manager.export.served_module import served_module
    from experiments_manager.training.compiled_model import compile_for_training
    from experiments_manager.training.model import build_model, compiled_metrics

    problems: list[str] = []
    name = settings.path.name
    model = _called(problems, settings.model_file.name, "model", settings, build_model, settings)
    if model is _FAILED:
        raise UserInputError(problems)
    if for_training and has_own_train_step(model):
        raise OwnTrainStep(settings.model_file.name)
    constructed = {id(layer) for layer in model._flatten_layers(include_self=False, recursive=False)}
    loss = _called(problems, name, "get_total_loss", settings, settings.training.get_total_loss, model)
    named = len(problems)
    check_loss_weights(problems, settings, model)
    weights = settings.training.loss_weights if len(problems) == named else None  # said: not said again as a loss's
    named = len(problems)
    check_output_keys(problems, settings, model, "get_total_loss", loss)
    compiled = len(problems) == named and loss is not _FAILED and _loss_known(problems, name, loss) and _called(
        problems, name, "get_total_loss", settings, functools.partial(model.compile, loss_weights=weights), None,
        loss) is not _FAILED
    rate = _called(problems, name, "get_learningRate", settings, settings.training.get_learning_rate)
    optimizer = _called(problems, name, "get_optimizer", settings, settings.training.get_optimizer, model, loss, rate)
    if optimizer is not _FAILED and not isinstance(optimizer, keras.optimizers.Optimizer):
        problems.append(f"{name}: get_optimizer: expected a Keras optimizer (e.g. "
                        f"keras.optimizers.Adam(learning_rate)), got {described(optimizer)}")
    metrics: Any = _FAILED
    if loss is not _FAILED:
        metrics = _called(problems, name, "get_metrics", settings, compiled_metrics, settings, model, loss)
    averages: Any = None
    if for_training and not problems:  # the model that trains: compiled as training compiles it
        averages = _called(problems, name, "get_optimizer", settings, compile_for_training, settings, model, loss,
                           optimizer, metrics, train_data)
        compiled = compiled and (metrics or True)  # compiled with them: the batches below compute them as fit() will
    elif compiled and metrics is not _FAILED and metrics:  # as fit() will: the metrics are computed on each batch
        recompile = functools.partial(model.compile, optimizer=None, loss=loss, loss_weights=weights, metrics=metrics)
        compiled = _called(problems, name, "get_metrics", settings, recompile) is not _FAILED and metrics
    logged: set[str]
    batch, logged = None, set()
    if not settings.kafka.enabled:  # a Kafka run's data comes from its topics
        for training in (True, False):
            batch = _check_pipeline(problems, settings, model, compiled, training, logged)
    if compiled and batch is not None and optimizer is not _FAILED and has_own_train_step(model):
        logs = _called(problems, settings.model_file.name, "train_step", settings, one_train_step, settings, model,
                       optimizer)
        logged.update(logs if isinstance(logs, set) else ())  # what the model's own step logs (a VAE's kl_loss)
        check_layers_made_by_the_step(problems, settings, model, constructed)
    check_monitor(problems, settings, model, logged)
    checked = BuiltModel(model, rate, averages)
    if model.built:  # a model built only by its first batch (no Input, data not read here) is checked at export
        module = _called(problems, name, "get_served_module", settings, served_module, settings, model)
        if initial_weights is not None and module is not _FAILED:  # first: a vocabulary it loads is what is served
            transfer = _called(problems, name, "--init-from", settings, initial_weights.load_into, model, settings,
                               averages)
            checked.transfer = transfer if transfer is not _FAILED else None
        if module is not _FAILED:
            checked.module = module
            checked.template = _check_served(problems, settings, module, batch, keep_template=for_training)
    if resumed_from is not None and not problems:  # the settings build: their training model and the checkpoint
        _called(problems, name, "the checkpoint", settings, check_checkpoint_fits, problems, resumed_from, settings)
    if problems:
        raise UserInputError(problems)
    return checked if for_training else None


def _called(problems: list[str], file_name: str, function: str, settings: Settings, call: Callable[..., Any],
            *arguments: Any) -> Any:
    """`call(*arguments)`, or `_FAILED` with one line in `problems` saying what it raised (and where in the
    user's file)."""
    try:
        return call(*arguments)
    except UserInputError as error:
        problems.extend(error.problems)
    except ModuleNotFoundError as error:  # the model file imports what this environment lacks
        from experiments_manager.settings.extras import missing_module_line

        problems.append(f"{file_name}: {function}{user_line(error, settings)}: {missing_module_line(error)}")
    except Exception as error:  # the user's code raised: one line, not a traceback
        problems.append(f"{file_name}: {function}{user_line(error, settings)}: raised {type(error).__name__}: "
                        f"{first_line(error)}")
    return _FAILED


def _loss_known(problems: list[str], file_name: str, loss: Any) -> bool:
    """False, with one line in `problems`, when `loss` is a name Keras does not know (with the closest one)."""
    import keras

    if not isinstance(loss, str):
        return True  # a function, a Loss object, or a list or dict of them (several outputs): compile() checks them
    try:
        keras.losses.get(loss)
        return True
    except (ValueError, TypeError):
        known = [name for name in dir(keras.losses) if not name.startswith("_") and name.islower()]
        close = difflib.get_close_matches(loss, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"{file_name}: get_total_loss: expected a Keras loss, got the unknown name {loss!r}{hint}")
        return False


def _check_pipeline(problems: list[str], settings: Settings, model: Any, compiled: Any, training: bool,
                    logged: set[str]) -> Any:
    """One batch of the pipeline through the model (and its compiled loss and metrics, when `compiled`: the
    metrics' list when the settings have some): its structure fits what the model expects. Returns the batch's
    inputs, or None when it could not be read or did not fit; adds the names the metrics log to `logged`."""
    from experiments_manager.settings.pipeline import settings_pipeline
    from experiments_manager.training.metric_kinds import wrong_kinds

    name, kind = settings.path.name, "training" if training else "validation"
    pipeline = _called(problems, name, "get_input_pipeline", settings, settings_pipeline, settings, training)
    if pipeline is _FAILED or not pipeline.restartable:  # a generator: a batch read here would be lost to training
        return
    if training:
        check_class_names(problems, settings, getattr(pipeline.dataset, "class_names", None))
    try:
        batch = next(iter(pipeline.dataset.take(1)))
    except StopIteration:
        problems.append(f"{name}: get_input_pipeline: the {kind} dataset is empty")
        return
    except Exception as error:
        problems.append(f"{name}: get_input_pipeline: reading the first {kind} batch raised {type(error).__name__}: "
                        f"{first_line(error)}")
        return
    if has_own_train_step(model):  # its step decides what a batch holds (points only, for a GAN) and what reads it:
        return batch  # `one_train_step` runs it on this batch
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        problems.append(f"{name}: get_input_pipeline: expected {kind} batches (x, y) or (x, y, sample_weight), got "
                        f"{structure_of(batch)}")
        return None
    x, y = batch[0], batch[1]
    weights = batch[2] if len(batch) == 3 else None
    try:
        predicted = model(x, training=False)
    except Exception as error:
        problems.append(f"{name}: get_input_pipeline: a {kind} batch {structure_of(x)} does not fit the model's inputs "
                        f"{structure_of(model.inputs) if getattr(model, 'inputs', None) else ''}: "
                        f"{type(error).__name__}: {first_line(error)}")
        return None
    if not compiled:
        return x
    try:
        model.compute_loss(x=x, y=y, y_pred=predicted)  # as fit() computes it: Keras matches ranks, structures
    except Exception as error:
        problems.append(f"{name}: get_total_loss: the loss cannot compare the {kind} labels {structure_of(y)} with the "
                        f"model's outputs {structure_of(predicted)}: {type(error).__name__}: {first_line(error)}")
        return x
    try:  # the loss (each output's too) and the settings' metrics (a list, or a dict per output), as an epoch logs
        logged.update(model.compute_metrics(x, y, predicted, sample_weight=weights))
    except Exception as error:
        if compiled is not True:
            names = ", ".join(_metric_name(metric) for metric in
                              (list(compiled.values()) if isinstance(compiled, dict) else compiled))
            problems.append(f"{name}: get_metrics: the metrics ({names}) cannot compare the {kind} labels "
                            f"{structure_of(y)} with the model's outputs {structure_of(predicted)}: "
                            f"{type(error).__name__}: {first_line(error)}")
    else:  # computed, but of a kind these labels make meaningless (categorical_accuracy on class ids)
        if compiled is not True:
            problems.extend(line for line in (f"{name}: {problem}" for problem in wrong_kinds(model, y, predicted))
                            if line not in problems)
    finally:
        model.reset_metrics()
    return x


def _metric_name(metric: Any) -> Any:
    return metric if isinstance(metric, str) else getattr(metric, "name", None) or getattr(metric, "__name__", "?")


def _check_served(problems: list[str], settings: Settings, module: Any, x: Any,
                  keep_template: bool = False) -> Optional[SavedModelTemplate]:
    """The served function traced with its input signature (what an export saves), called on the validation
    batch `x` when that fits the signature, and saved once as a SavedModel into a temporary folder, with the
    signatures a version has: a signature that does not fit the model, or a module that cannot be exported, fails
    here, not at the first export. With `keep_template`, returns that save's `SavedModelTemplate` (the module's
    variables still hold what was saved: the run's versions are written from it), or None."""
    import tensorflow as tf

    from experiments_manager.export.template import SavedModelTemplate

    name = settings.path.name
    function = module.served_model
    specs = tf.nest.flatten(function.input_signature)
    try:
        signature = function.get_concrete_function()
        if x is not None and len(specs) == 1 and tf.is_tensor(x) and specs[0].shape.is_compatible_with(x.shape):
            function(tf.cast(x, specs[0].dtype))
    except Exception as error:
        problems.append(f"{name}: get_served_module: the served function's input signature {structure_of(specs)} does "
                        f"not fit the model: {type(error).__name__}: {first_line(error)}")
        return None
    with tempfile.TemporaryDirectory(prefix="em-dry-export-") as folder:
        try:  # what the first export does after epoch 1, here before it (a state the saver cannot reach, say)
            with lean_save(getattr(module, "model", None)):  # as the exporter saves it
                tf.saved_model.save(module, folder, signatures=dict.fromkeys(version_signatures(settings), signature))
        except OSError as error:  # this machine's temporary folder (full, say), not the module: tried at export
            _LOG.warning("The served module was not tried as a SavedModel before training (%s: %s)",
                         type(error).__name__, error)
            return None
        except Exception as error:
            said = first_line(error).removesuffix(" See the information below:")  # TensorFlow's, not ours
            problems.append(f"{name}: get_served_module: expected a served module that can be exported as a "
                            f"SavedModel, got: {type(error).__name__}: {said}")
            return None
        return SavedModelTemplate.read(folder, module) if keep_template else None
