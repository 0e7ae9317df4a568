"""What a training run ended with (its `endings.Ending`: status and exit code from the one table)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

if TYPE_CHECKING:
    from experiments_manager.run.endings import Ending
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings.loader import Settings
    from experiments_manager.training.built_model import BuiltModel


class TrainingOutcome:
    """What a training run ended with.

    Attributes:
        experiment: the `Experiment` (None on a non-chief worker: the chief reports it).
        ending: the `endings.Ending` it recorded.
        status: 'finished', 'interrupted' or 'failed' (as in run.json).
        exit_code: the ending's (`endings.py`' table): 0 when finished, 128 + signal when a signal interrupted it,
            75 when its input data stalled, 2 on bad input, 1 when failed.
        model: the model the run reports: its best exported version (the one holding its best epoch, EMA weights)
            as a Keras model, loaded on first use (`version_loading.load_version`); None when nothing was exported.
        trained_model: the compiled model as training left it (the last epoch's EMA weights, its optimizer) when it
            ended in-process, else None.
        reason: why it did not finish (the ending's reason or error line), or None.
        trained: False when nothing was trained (a finished run resumed without an extension).
        built: the trained model with its served module and versions' template (`BuiltModel`), when it finished
            in-process: what a resume in this process may continue with (a sweep trial's next rung); else None.

    Example:

    ```python
    outcome = em.train("examples/regression/mysettings_curve_fitting.py", {"nbEpoch": 3})
    outcome   # <TrainingOutcome finished: ... (best val_loss 0.0123 at epoch 3); model: version 3 (epoch 3, ...)>
    outcome.model.predict(x)
    ```
    """

    def __init__(self, experiment: Optional[Experiment], ending: Ending, trained_model: Any = None,
                 settings: Optional[Settings] = None, trained: bool = True, built: Optional[BuiltModel] = None) -> None:
        self.experiment = experiment
        self.built = built
        self.trained = trained
        self.ending = ending
        self.status: str = ending.status.value
        self.exit_code = ending.exit_code
        self.trained_model = trained_model
        self.reason = ending.reason or ending.error
        self._settings = settings  # the run's settings as loaded in this process (None: its own copies)
        self._root = Path(experiment.root).resolve() if experiment is not None else None  # whatever the cwd later
        self._model: Any = None

    @property
    def model(self) -> Any:
        """The run's best exported version as a Keras model (loaded once), or None when it exported none."""
        if self._model is None and self._root is not None:
            from experiments_manager.run.experiment import Experiment
            from experiments_manager.training.version_loading import load_version
            from experiments_manager.run.served_layout import present_versions

            experiment = Experiment(self._root)
            if present_versions(experiment.export_dir):
                self._model = load_version(experiment, settings=self._settings_of(experiment))
        return self._model

    def _settings_of(self, experiment: Experiment) -> Optional[Settings]:
        """The in-process settings with the run's own copy of the model file (an absolute path: the current
        directory may have changed since), or None."""
        from experiments_manager.settings import Settings

        settings = self._settings
        if settings is None:
            return None
        return Settings(settings.module, settings.path, experiment.model_file_copy(), settings.overrides,
                        from_file=settings.from_file, script=settings.script.absolute(),
                        model_script=settings.model_script.absolute())  # the model file's `__file__` as in training

    def __repr__(self) -> str:
        from experiments_manager.run.experiment import Experiment
        from experiments_manager.run.version_records import reported_version

        where = self.experiment.root if self.experiment is not None else "(a worker: the chief keeps the experiment)"
        text = f"<TrainingOutcome {self.status}: {where}"
        if self.experiment is not None:
            experiment = Experiment(cast(Path, self._root))  # set with the experiment
            info = experiment.run_info() if experiment.run_file.is_file() else {}
            if isinstance(info.get("best_value"), (int, float)):
                text += (f" (best {info.get('monitored_loss_name')} {info['best_value']:.4g} at epoch "
                         f"{info.get('best_epoch')})")
            version, held = reported_version(info, experiment.export_dir)
            if version is not None:
                text += f"; model: version {version}" + (f" ({held})" if held else "")
        if self.reason:
            text += f"; {self.reason}"
        return text + ">"
