"""`evaluate`: a run's exported version on its test set, reported beside the run and recorded in run.json.

The test set is the settings' test pipeline, `get_input_pipeline(raw_data_dir_test, isTraining=False, batch_size,
nbEpoch)`, or the same call with a folder given (`evaluate --data FOLDER`), read whole. The version is loaded as a
Keras model (`version_loading.py`: the EMA weights the server serves), compiled with the settings' loss and
`get_metrics`, and evaluated by Keras; a second pass takes its outputs beside the labels, and for a classifier
(`classification_report.py`) gives the confusion matrix and the per-class table. The report goes to
`RUN/evaluations/<stamp>-v<N>/` (evaluation.json, and for a classifier per_class.csv, confusion_matrix.csv and
confusion_matrix.png), written whole under a temporary name (`run/evaluations.py`, which `list` and `diff` read
the newest from), or in the folder `--output DIR` names; a disk that takes no write (a read-only run) leaves the
numbers printed and said unsaved, exit 75. A version is read, never written: no lease is taken, so a run is
evaluated while it trains (its versions are served live) and run.json stays the training run's.

Example:

```python
evaluation = evaluate_run("experiments/digits/my_test_2026-11-23--10-00-00")
evaluation.metrics           # {'loss': 0.21, 'accuracy': 0.94}
print(evaluation)            # the table `experiments-manager evaluate` prints
```
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from experiments_manager.run.classification_report import ClassificationReport
from experiments_manager.run.evaluations import EVALUATIONS_FOLDER, Evaluation, save_evaluation
from experiments_manager.run.experiment import Experiment
from experiments_manager.settings.sections import user_name
from experiments_manager.utils.atomic import PathLike
from experiments_manager.utils.environment_failures import environment_errno
from experiments_manager.utils.errors import UserInputError
from experiments_manager.utils.own_train_step import has_own_train_step
from experiments_manager.run.version_records import version_summary

if TYPE_CHECKING:
    from experiments_manager.run.version_records import VersionRecord
    from experiments_manager.settings.data_folders import DataFolder
    from experiments_manager.settings.loader import Settings

_LOG = logging.getLogger(__name__)
TEST_PIPELINE = "test pipeline"  # run.json's `data` of an evaluation on the settings' own test pipeline


def evaluate_run(run: PathLike | Experiment, version: Optional[int] = None, data: Optional[PathLike] = None,
                 settings: object = None, accept_code_change: bool = False,
                 how_to_accept: str = "--accept-code-change", output: Optional[PathLike] = None) -> Evaluation:
    """Evaluates version `version` (None: the best) of the run `run` on its test set and saves it in the run's
    `evaluations/` folder (or in `output`); a run being trained is evaluated as it is (its lease is not taken).

    Args:
        run: the experiment folder (or its `Experiment`, opened).
        version: the version number (default None: the version holding the run's best epoch).
        data: the `raw_data_files_folder` to give `get_input_pipeline` instead of the settings' `raw_data_dir_test`
            (default None).
        settings: for a run whose settings were built in Python, the same settings again (default None: the run's
            own copies).
        accept_code_change: evaluate although a module of the run's code changed since it trained (default False:
            refused in one line naming the file).
        how_to_accept: how the user accepts it, as the refusal says (default the command's flag).
        output: the folder to save the evaluation in instead of the run's `evaluations/` (default None).

    Returns:
        the `Evaluation`; its `unsaved` says in one line why it is not saved when the disk took no write.

    Raises:
        UserInputError: no such run or version, no export yet, no test data, the run's code changed.

    Example:

    ```python
    evaluate_run(run, version=2, data="data/holdout")
    ```
    """
    from experiments_manager.run.version_records import chosen_version
    from experiments_manager.settings import Settings, load_experiment_settings
    from experiments_manager.training.model import dtype_policy
    from experiments_manager.training.version_loading import chosen_version_model
    from experiments_manager.utils.links import first_link_at_or_below, refuse_link

    experiment = run if isinstance(run, Experiment) else Experiment.open(run)
    number, record, best = chosen_version(experiment, version)
    experiment.refuse_code_changes("evaluate", accept_code_change, how_to_accept)  # before the model is built
    if output is not None and Path(output).exists() and not Path(output).is_dir():
        raise UserInputError(f"{output}: --output: expected a folder (made if missing), got a file")
    if output is None:  # nothing is written through a link in a run's folder
        refuse_link(first_link_at_or_below(experiment.root / EVALUATIONS_FOLDER))
    if not isinstance(settings, Settings):
        with dtype_policy(None):  # the caller's Keras policy is left as it is, whatever the settings file sets
            settings = load_experiment_settings(experiment, settings)
    folder, label = _test_data(settings, data, experiment.root)  # no test set: said before the model is built
    model = chosen_version_model(experiment, number, record, best, settings)  # the one read em.load makes
    written_to = Path(output) if output is not None else None
    return VersionEvaluator(model, settings, folder, label, experiment, number, record, best, written_to).run()


@dataclasses.dataclass(frozen=True)
class VersionEvaluator:
    """Evaluates a version's model on the test data (Keras' `evaluate` with the settings' loss and metrics, then for
    a classifier its outputs beside the labels) and saves the evaluation in the run's `evaluations/` folder.

    Args:
        model: the version's model, read by `version_loading.chosen_version_model` (`evaluate_run`).
        settings: the run's `Settings`.
        data: the folder given to `get_input_pipeline` (a `DataFolder` of the settings' test folder, or the one
            given); `label`: what the evaluation records of it.
        experiment: the run; `number`: the version number; `record`: its version record, or None; `best`: it holds
            the run's best epoch.
        output: the folder the evaluation is saved in (default None: the run's `evaluations/`).

    Example:

    ```python
    evaluation = VersionEvaluator(model, settings, folder, "test pipeline", experiment, 3, None, True).run()
    ```
    """

    model: Any
    settings: Settings
    data: str | DataFolder
    label: str
    experiment: Experiment
    number: int
    record: Optional[VersionRecord]
    best: bool
    output: Optional[Path] = None

    def run(self) -> Evaluation:
        """Evaluates and saves; returns the `Evaluation`."""
        _LOG.info("Evaluating version %d of %s on %s", self.number, self.experiment.root, self.label)
        metrics, samples, report = _numbers(self.model, self.settings, self.data)
        evaluation = Evaluation(self.experiment.root, self.number, self.record, self.label, metrics, samples, report)
        evaluation.best = self.best
        _save(evaluation, self.experiment, self.output)
        return evaluation


def _test_data(settings: Settings, data: Optional[PathLike], run_folder: Path) -> tuple[str | DataFolder, str]:
    """(the folder given to `get_input_pipeline`: a `DataFolder` of the settings' test folder, also looked for from
    the run's folder; the label run.json records)."""
    from experiments_manager.settings.data_folders import data_folder

    if data is not None:
        return str(data), str(data)
    if settings.data.test_dir is None:
        raise UserInputError(f"{settings.path.name}: {user_name('data', 'test_dir')}: not set, so there is no test "
                             "set: set it (the raw_data_files_folder of get_input_pipeline(..., isTraining=False, "
                             "...)) or give one with --data FOLDER (em.evaluate(run, data=FOLDER))")
    return data_folder(settings, "test_dir", run_folder), TEST_PIPELINE


def _numbers(model: Any, settings: Settings,
             folder: str | DataFolder) -> tuple[dict[str, float], int, Optional[ClassificationReport]]:
    """(Keras' metrics, the samples read, the classification report or None) of the model on the folder's test
    pipeline."""
    from experiments_manager.training.model import compile_for_evaluation

    compile_for_evaluation(settings, model)
    dataset, steps = input_pipeline(settings, folder)
    metrics = model.evaluate(dataset, steps=steps, return_dict=True, verbose=0)
    metrics = {name: float(value) for name, value in metrics.items()}
    if has_own_train_step(model):  # a model with its own steps: its test_step's numbers are the evaluation
        return metrics, _counted(dataset, steps), None
    outputs, labels = _outputs_and_labels(model, *input_pipeline(settings, folder))  # a fresh pass
    if outputs is None or labels is None:
        return metrics, _counted(dataset, steps), None
    names = settings.data.class_names
    report = ClassificationReport.of(labels, outputs, class_names=names)
    if report is not None and names is not None and len(names) != report.confusion.shape[0]:
        raise UserInputError(f"{settings.path.name}: class_names: expected {report.confusion.shape[0]} names "
                             f"(the model's class scores), got {len(names)}")
    return metrics, len(labels), report


def input_pipeline(settings: Settings, folder: object, training: bool = False,
                   reader: str = "") -> tuple[Any, Optional[int]]:
    """(the dataset, its steps or None to read it whole) of the settings' `get_input_pipeline(folder, training, ...)`.

    Args:
        settings: the run's `Settings`.
        folder: the `raw_data_files_folder` given, or a settings' `DataFolder` (its `used` path is given; a
            pipeline that fails while it was found nowhere says where it was looked for).
        training: `isTraining` (default False: the test or validation pipeline; True: the training pipeline, which
            the caller bounds: edge export's calibration batches).
        reader: '' (default): `evaluate`, which reads the test pipeline whole and refuses an infinite one; else the
            reader named in the refusal (e.g. 'export (edge)'), whose validation pipeline is bounded as training
            bounds it (`inputs.steps_per_epoch`: a finite dataset whole, else nb_val_samples // batch_size batches or a
            Keras 2 iterator's steps), so an endless generator is read in part, never forever.

    Raises:
        UserInputError: the settings' code failed (one line naming where), or an infinite dataset to read whole.

    Example:

    ```python
    dataset, steps = input_pipeline(settings, settings.data.val_dir)
    dataset, steps = input_pipeline(settings, settings.data.val_dir, reader="export (edge)")
    ```
    """
    import tensorflow as tf

    from experiments_manager.training.inputs import steps_per_epoch
    from experiments_manager.keras2.pipelines import as_pipeline
    from experiments_manager.settings.data_folders import DataFolder
    from experiments_manager.training.problem_lines import user_code_error

    whole = not training and not reader  # evaluate: every test sample once
    searched = folder if isinstance(folder, DataFolder) else DataFolder("raw_data_files_folder", folder, folder)
    folder = searched.used
    try:
        pipeline = as_pipeline(searched.pipeline_of(settings, training), settings, training, whole=whole)
    except UserInputError:
        raise
    except Exception as error:  # the settings' code failed on this folder: one line naming where, not a traceback
        line = searched.failed_line(settings.path.name, error)  # (a lazy pipeline fails as it is first read)
        raise UserInputError(line or user_code_error(error, settings) or f"{settings.path.name}: get_input_pipeline "
                             f"({folder!r}, isTraining={training}): raised {type(error).__name__}: {error}") from None
    if reader and not training:
        return pipeline.dataset, steps_per_epoch(pipeline.dataset, settings, False, pipeline.steps, reader=reader)
    infinite = getattr(pipeline.dataset, "cardinality", None) and (
        int(pipeline.dataset.cardinality()) == tf.data.INFINITE_CARDINALITY)
    if infinite and not pipeline.steps and not training:
        raise UserInputError(f"{settings.path.name}: get_input_pipeline: the test dataset ({folder!r}, "
                             "isTraining=False) is infinite: expected a finite one (evaluate reads it whole)")
    return pipeline.dataset, pipeline.steps


def _outputs_and_labels(model: Any, dataset: Any,
                        steps: Optional[int]) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(outputs N x ..., labels) of a single-output model over the dataset, or (None, None) for several outputs
    or labels that are not arrays."""
    outputs, labels = [], []
    for batch in (dataset.take(steps) if steps else dataset):
        x, y = batch[0], batch[1]
        predicted = model(x, training=False)
        if isinstance(predicted, (dict, list, tuple)) or isinstance(y, (dict, list, tuple)):
            return None, None
        outputs.append(np.asarray(predicted, dtype=np.float64))
        labels.append(np.asarray(y))
    if not outputs:
        raise UserInputError("get_input_pipeline: the test dataset is empty")
    return np.concatenate(outputs), np.concatenate(labels)


def _counted(dataset: Any, steps: Optional[int]) -> int:
    """The samples of the dataset's batches: the labels' first dimension, or the inputs' when it has none."""
    count = 0
    for batch in (dataset.take(steps) if steps else dataset):
        part = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else batch  # (x, y) or x alone
        count += int(np.shape(_first_array(part))[0])
    return count


def _first_array(part: Any) -> Any:
    """The first array of a batch's part: itself, or the first of a dict's, list's or tuple's (several outputs)."""
    while isinstance(part, (dict, tuple, list)):
        part = next(iter(part.values())) if isinstance(part, dict) else part[0]
    return part


def _save(evaluation: Evaluation, experiment: Experiment, output: Optional[Path]) -> None:
    """Writes the evaluation's folder (`run/evaluations.save_evaluation`) in the run's `evaluations/`, or in `output`;
    run.json is the training run's, not touched. A disk that takes no write (read-only, full, not the user's) leaves
    the numbers unsaved, in one line of `evaluation.unsaved` that the caller says after them."""
    base = Path(output) if output is not None else experiment.root / EVALUATIONS_FOLDER
    held = version_summary(evaluation.record, evaluation.best)
    title = f"{experiment.name}\nversion {evaluation.version}{f' ({held})' if held else ''} on {evaluation.data}"
    try:
        if output is None:
            base.mkdir(exist_ok=True)
        evaluation.folder = save_evaluation(evaluation, base, title)
    except FileNotFoundError:
        raise UserInputError(f"{experiment.root}: removed while it was evaluated: nothing saved") from None
    except OSError as error:  # the numbers are not lost for it: said after them
        number = environment_errno(error)
        words = os.strerror(number) if number is not None else error.strerror or type(error).__name__
        evaluation.unsaved = (f"{base}: {words}: the evaluation above is not saved; give --output DIR "
                              "(em.evaluate(..., output=DIR)) to save it elsewhere")
