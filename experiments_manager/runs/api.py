"""The Python API, for notebooks and scripts: `em.train`, `em.resume`, `em.sweep`, `em.serve`, `em.load`,
`em.evaluate`.

Each call shows the engine's log lines (on stderr, which Jupyter prints under the cell) unless the caller set up
logging, and returns an object whose repr says what happened and where it went.

Long because it is the whole Python API in one place: each call's docstring (Args with defaults, Example) is the text
of docs/reference/api.md, and each call only checks its arguments and hands them to the package.

Example:

```python
import experiments_manager as em

outcome = em.train("examples/regression/mysettings_curve_fitting.py", {"nbEpoch": 3})
outcome                      # <TrainingOutcome finished: experiments/curve_fitting/my_test_... (best val_loss ...)>
with em.serve(outcome.experiment.root) as server:
    server                   # <ModelServer serving model_curve_fitting ... gRPC 127.0.0.1:41234, REST http://...>
```
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union, cast

from experiments_manager.serving.options import ServerOptions
from experiments_manager.utils.atomic import PathLike
from experiments_manager.utils.logging_setup import configure_logging

if TYPE_CHECKING:  # the heavy modules load when a call needs them
    from pathlib import Path

    import keras

    from experiments_manager.run.evaluations import Evaluation
    from experiments_manager.serving.server import ModelServer
    from experiments_manager.settings.loader import Settings
    from experiments_manager.sweeps.driver import SweepOutcome
    from experiments_manager.training.outcome import TrainingOutcome

_LOG = logging.getLogger(__name__)
# a settings file's path, loaded `Settings`, or a module / class / object / dict built in Python (`as_settings`)
SettingsLike = Union[PathLike, "Settings", Any]


def show_logs() -> None:
    """Shows the engine's INFO lines on stderr, unless the caller set up logging (a root or an own handler)."""
    ours = logging.getLogger("experiments_manager")
    if logging.getLogger().handlers or any(not getattr(h, "experiments_manager_cli", False) for h in ours.handlers):
        return
    configure_logging()


def train(settings: SettingsLike, hparams: Optional[Mapping[str, Any]] = None, *,
          working_folder: Optional[PathLike] = None, kafka_bootstrap_servers: Optional[str] = None,
          init_from: Optional[str] = None, skip_mismatch: bool = False,
          mlflow: Optional[str] = None, trust_code: bool = False) -> TrainingOutcome:
    """Trains a new experiment; returns its `TrainingOutcome`.

    Args:
        settings: a settings file's path, a loaded `Settings`, or a settings module / class / object / dict built
            in Python (its attributes are the settings file's names).
        hparams: dict of hparam overrides (as `--hparam`: keys of the settings' hparams or settings, `"+name"` for a
            new hparam; default None).
        working_folder: where the experiment folder goes (default: the settings' `workingFolder`).
        kafka_bootstrap_servers: Kafka brokers overriding the settings' (default None).
        init_from: fine-tune: start from the weights (EMA) of another run's best version, `RUN`, or of its version
            N, `f"{RUN}:{N}"` (default None). Same architecture; the optimizer starts fresh; run.json records
            `fine_tuned_from`.
        skip_mismatch: with `init_from`, load the weights whose shape fits and leave the others (a new head) as
            the new model made them; run.json's `fine_tuned_from` lists them (default False: refuse them).
        mlflow: log the run to this MLflow tracking server, as `train --mlflow URI` ('': MLFLOW_TRACKING_URI;
            default None: the settings' `mlflow_tracking_uri`, else not logged).
        trust_code: with `init_from`, run the source run's copies although another user owns them (default False:
            refused in one line; see docs/explanation/security.md).

    Raises:
        UserInputError: the settings are wrong (every problem, one line each).

    Example:

    ```python
    outcome = em.train("examples/regression/mysettings_curve_fitting.py", {"nbEpoch": 3})
    outcome.status, outcome.experiment.root, outcome.model
    ```
    """
    from experiments_manager import training
    from experiments_manager.settings import as_settings

    from experiments_manager.utils.errors import UserInputError

    show_logs()
    settings = as_settings(settings, hparams)
    if settings.federated.enabled:  # as `train -u` does: the federation, simulated on this machine
        return _simulated_federation(settings, working_folder, kafka_bootstrap_servers,
                                     str(init_from) if init_from is not None else None, skip_mismatch, trust_code)
    return training.train(settings, command=_command("train", settings), working_folder=working_folder,
                          kafka_bootstrap_servers=kafka_bootstrap_servers, init_from=init_from,
                          skip_mismatch=skip_mismatch, mlflow=mlflow, trust_code=trust_code)


def _simulated_federation(settings: Settings, working_folder: Optional[PathLike], kafka_bootstrap_servers: Optional[str],
                          init_from: Optional[str], skip_mismatch: bool, trust_code: bool) -> TrainingOutcome:
    from experiments_manager.federated.simulation import simulate
    from experiments_manager.run.endings import recorded
    from experiments_manager.training import TrainingOutcome
    from experiments_manager.utils.errors import UserInputError

    if not settings.from_file or working_folder is not None or kafka_bootstrap_servers:
        raise UserInputError(f"{settings.path.name}: enable_federated_learning = True: em.train simulates the "
                             "federation from a settings file (every client loads it), in its workingFolder, "
                             "without Kafka")
    experiment = simulate(settings, command=_command("train", settings), init_from=init_from,
                          skip_mismatch=skip_mismatch, trust_code=trust_code)
    return TrainingOutcome(experiment, recorded(experiment.run_info()))  # as the ServerApp recorded it


def resume(experiment_dir: PathLike, *, settings: Optional[SettingsLike] = None,
           kafka_bootstrap_servers: Optional[str] = None, accept_code_change: bool = False,
           epochs: Optional[int] = None, more_epochs: Optional[int] = None,
           settings_source: str = "copy", mlflow: Optional[str] = None, trust_code: bool = False) -> TrainingOutcome:
    """Continues an experiment from its last checkpoint, or extends it; returns its `TrainingOutcome`.

    Args:
        experiment_dir: the experiment folder.
        settings: for an experiment whose settings were built in Python, the same settings again (default None:
            the experiment's own copy of its settings file).
        kafka_bootstrap_servers: Kafka brokers replacing the recorded ones (default None).
        accept_code_change: train on although the code changed since the last attempt (default False: refused).
        epochs: extend the run, finished or not, to this many epochs in all, in place (default None: finish the
            epochs it was started for). Its EMA, best value, early-stopping counter and versions go on.
        more_epochs: extend the run by this many epochs (default None).
        settings_source: 'copy' (default: the run's copies of its settings and model files, the code it trained
            with) or 'original' (your files, edited since: they replace the copies, recorded in run.json).
        mlflow: log to this MLflow tracking server ('': MLFLOW_TRACKING_URI; default None: the one run.json names,
            when the run was logged).
        trust_code: run the folder's copies although another user owns them (default False: refused in one line).

    A federation's server folder continues its rounds from the last recorded one (`federated simulate --resume`).

    Example:

    ```python
    em.resume(outcome.experiment.root)
    em.resume(outcome.experiment.root, epochs=20)   # a finished 10-epoch run trained on to 20 epochs
    ```
    """
    from experiments_manager import training
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.resume_plan import is_federation

    show_logs()
    opened = Experiment.open(experiment_dir, trust_code=trust_code)
    if is_federation(opened.run_info()):  # a federation's server folder: its rounds continue
        from experiments_manager.federated.simulation import resume_simulation
        from experiments_manager.run.endings import recorded
        from experiments_manager.utils.errors import UserInputError

        given = [name for name, value in (("settings", settings), ("kafka_bootstrap_servers", kafka_bootstrap_servers),
                                          ("epochs", epochs), ("more_epochs", more_epochs), ("mlflow", mlflow))
                 if value is not None] + (["settings_source"] if settings_source != "copy" else [])
        if given:
            raise UserInputError(f"{', '.join(given)}: expected none for a federation's folder (its rounds resume as "
                                 f"it started; federated simulate --resume RUN --rounds R extends it), got "
                                 f"{', '.join(given)}")

        federation = resume_simulation(opened, command=["em.resume", str(experiment_dir)])
        return training.TrainingOutcome(federation, recorded(federation.run_info()))
    command = ["em.resume", str(experiment_dir)] + (["--epochs", str(epochs)] if epochs is not None else []) + (
        ["--more-epochs", str(more_epochs)] if more_epochs is not None else [])
    return training.resume(experiment_dir, command=command, settings=settings,
                           kafka_bootstrap_servers=kafka_bootstrap_servers, accept_code_change=accept_code_change,
                           epochs=epochs, more_epochs=more_epochs, settings_source=settings_source, mlflow=mlflow,
                           trust_code=trust_code)


def sweep(settings_file: PathLike, max_evals: int, *, hparams: Optional[Mapping[str, Any]] = None, algo: str = "tpe",
          seed: Optional[int] = None, parallelism: int = 1, spark_master: Optional[str] = None, workers: int = 1,
          join: Optional[str] = None, mlflow: Optional[str] = None, startup_trials: Optional[int] = None,
          scheduler: Optional[str] = None, eta: Optional[int] = None, min_epochs: Optional[int] = None,
          max_epochs: Optional[int] = None) -> SweepOutcome:
    """Runs a hyperopt sweep, each trial an experiment (trained in a warm process of its worker); returns its
    `SweepOutcome`.

    Args:
        settings_file: the settings file with a `hyperopt_space` (a file: each trial loads it in its worker's trial
            host).
        max_evals: the number of trials.
        hparams: fixed hparam overrides for every trial (default None).
        algo: hyperopt's 'tpe' (default), 'rand' or 'anneal'.
        seed: the sweep's seed (default: the settings' `random_seed`, else drawn; recorded in sweep.json).
        parallelism: worker processes started as Spark tasks, each joining the sweep (default 1: no Spark).
        spark_master: the Spark master URL with parallelism > 1 (default: local).
        workers: trials at once in this process (with parallelism: in each worker process; default 1).
        join: the name of a sweep folder other processes (nodes) work on too (default None: a new sweep).
        mlflow: log the sweep to this MLflow tracking server, as `sweep --mlflow URI` ('': MLFLOW_TRACKING_URI;
            default None: the settings' `mlflow_tracking_uri`, else not logged).
        startup_trials: with 'tpe', the trials drawn at random before it models (default None: a quarter of
            `max_evals`, at least 3 and 2 per worker, at most 20).
        scheduler, eta, min_epochs, max_epochs: 'asha' or 'hyperband' stops bad trials early, as `sweep --scheduler`
            (default None: the settings' `sweep_scheduler`, else none).

    Example:

    ```python
    result = em.sweep("examples/regression/mysettings_curve_fitting.py", 4, hparams={"nbEpoch": 2}, seed=1)
    result.best        # the best trial's row: its hparams, value and experiment folder
    ```
    """
    from experiments_manager.sweeps.driver import run_sweep
    from experiments_manager.sweeps.request import SweepRequest

    show_logs()
    return run_sweep(SweepRequest(usersettings=_file_only(settings_file), max_evals=max_evals,
                                  hparams=dict(hparams or {}), algo=algo, seed=seed, parallelism=parallelism,
                                  spark_master=spark_master, workers=workers, join=join, mlflow=mlflow,
                                  startup_trials=startup_trials, scheduler=scheduler, eta=eta, min_epochs=min_epochs,
                                  max_epochs=max_epochs))


def resume_sweep(sweep_folder: PathLike, *, max_evals: Optional[int] = None, parallelism: Optional[int] = None,
                 workers: Optional[int] = None, trust_code: bool = False) -> SweepOutcome:
    """Continues a sweep (more trials with `max_evals`; `workers` trials at once), or joins the workers that run it;
    returns its `SweepOutcome`. `trust_code`: run the sweep's code although another user owns it (default False:
    refused in one line)."""
    from experiments_manager.sweeps.driver import run_sweep
    from experiments_manager.sweeps.request import SweepRequest

    show_logs()
    return run_sweep(SweepRequest(resume=str(sweep_folder), max_evals=max_evals, parallelism=parallelism,
                                  workers=workers, trust_code=trust_code))


def serve(experiment_dir: PathLike, *, grpc_port: int = 0, rest_port: Optional[int] = 0, host: str = ServerOptions.host,
          poll_seconds: float = ServerOptions.poll_seconds) -> ModelServer:
    """Serves an experiment's exported versions in this process (gRPC + REST, TF Serving's APIs) until stopped.

    Args:
        experiment_dir: the experiment folder.
        grpc_port: gRPC port (default 0: any free port).
        rest_port: REST port (default 0: any free port; None: no REST).
        host: the interface (default 127.0.0.1: this machine only).
        poll_seconds: how often new versions are looked for (default 1).

    Returns:
        the started `ModelServer`: `.grpc_address`, `.rest_url`, `.stop()`; also a context manager.

    Example:

    ```python
    server = em.serve(outcome.experiment.root)
    # the model's name is the model file's (model_curve_fitting.py), as the end of training prints it
    requests.post(f"{server.rest_url}/v1/models/model_curve_fitting:predict", json={"instances": [[0.5]]}).json()
    server.stop()
    ```
    """
    from experiments_manager.serving.config import source_from_experiment
    from experiments_manager.serving.server import ModelServer

    show_logs()
    options = ServerOptions(host=host, grpc_port=grpc_port, rest_port=rest_port, poll_seconds=poll_seconds)
    return ModelServer([source_from_experiment(experiment_dir)], options).start()


def load(run: PathLike, version: Optional[int] = None, *, settings: Optional[SettingsLike] = None,
         accept_code_change: bool = False, trust_code: bool = False) -> keras.Model:
    """A run's best exported version (or version `version`) as a Keras model with its EMA weights, ready to predict.

    The run's own model is rebuilt from its copies of the settings and model file, and the version's weights are
    read into it: its predictions are what the server answers for that version.

    Args:
        run: the experiment folder.
        version: the version number (default None: the version holding the run's best epoch).
        settings: for a run whose settings were built in Python, the same settings again (default None).
        accept_code_change: rebuild the model although a module the run imported (a helper beside the model file)
            changed since it trained (default False: refused in one line naming the file).
        trust_code: run the folder's copies although another user owns them (default False: refused in one line;
            loading a run executes its settings and model copies, see docs/explanation/security.md).

    Returns:
        the Keras model; `model.version_info` says the run, the version, the epoch it holds and its monitored value.

    Raises:
        UserInputError: no such run, no such version (the versions it has said), no export yet (its status said),
            a module of the run's code changed since it trained, or another user owns its code (without
            `trust_code`).

    Example:

    ```python
    model = em.load(outcome.experiment.root)         # the best version
    model.version_info                               # {'run': ..., 'version': 3, 'epoch': 2, 'value': 0.0123, ...}
    model.predict(x)
    ```
    """
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.training.version_loading import load_version

    show_logs()
    return load_version(Experiment.open(run, trust_code=trust_code), version, settings=settings,
                        accept_code_change=accept_code_change)


def evaluate(run: PathLike, version: Optional[int] = None, *, data: Optional[PathLike] = None,
             settings: Optional[SettingsLike] = None, accept_code_change: bool = False,
             output: Optional[PathLike] = None, trust_code: bool = False) -> Evaluation:
    """Evaluates a run's best version (or version `version`) on its settings' test pipeline (or on `data`); returns
    its `Evaluation`, saved under `RUN/evaluations/<stamp>-v<N>/` (`list` and `diff` show the newest). A run being
    trained is evaluated as it is: a version is read, the run's lease is not taken.

    Args:
        run: the experiment folder.
        version: the version number (default None: the version holding the run's best epoch).
        data: the `raw_data_files_folder` given to `get_input_pipeline(..., isTraining=False, ...)` instead of the
            settings' `raw_data_dir_test` (default None).
        settings: for a run whose settings were built in Python, the same settings again (default None).
        accept_code_change: evaluate although a module of the run's code changed since it trained (default False:
            refused in one line naming the file).
        output: the folder to save the evaluation in (default None: the run's `evaluations/`).
        trust_code: run the folder's copies although another user owns them (default False: refused in one line).

    Returns:
        the `Evaluation`: `.metrics` (the compiled loss and metrics), `.confusion` and `.per_class` for a classifier,
        `.folder` (its report); `print(result)` shows the table `experiments-manager evaluate` prints. On a disk
        that takes no write (a read-only run), `.folder` is None and `.unsaved` says why, also as a warning.

    Example:

    ```python
    result = em.evaluate(outcome.experiment.root)
    result.metrics          # {'loss': 0.31, 'accuracy': 0.91}
    ```
    """
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.runs.evaluation import evaluate_run

    show_logs()
    evaluation = evaluate_run(Experiment.open(run, trust_code=trust_code), version, data=data, settings=settings, accept_code_change=accept_code_change,
                              how_to_accept="em.evaluate(..., accept_code_change=True)", output=output)
    if evaluation.unsaved is not None:
        _LOG.warning("%s", evaluation.unsaved)
    return evaluation


def _command(name: str, settings: Settings) -> list[str]:
    """What run.json records as the command that started a run from Python."""
    return [f"em.{name}", str(settings.path) if settings.from_file else settings.path.name]


def _file_only(settings_file: object) -> str:
    from pathlib import Path

    from experiments_manager.utils.errors import UserInputError

    if not isinstance(settings_file, (str, Path)):
        raise UserInputError(f"em.sweep: settings_file: expected the path of a settings file (each trial "
                             f"loads it), got {type(settings_file).__name__}")
    return str(settings_file)
