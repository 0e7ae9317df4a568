"""What a training run ended with, and the exit codes that say it."""

from experiments_manager.utils.errors import EXIT_TEMPFAIL

SIGNAL_EXIT_BASE = 128
STALLED_EXIT_CODE = EXIT_TEMPFAIL  # the data stopped arriving; resume later


class TrainingOutcome:
    """What a training run ended with.

    Attributes:
        experiment: the `Experiment` (None on a non-chief worker: the chief reports it).
        status: 'finished', 'interrupted' or 'failed' (as in run.json).
        exit_code: 0 when finished, 128 + signal when a signal interrupted it,
            75 when its input data stalled, 1 when failed.
        model: the trained Keras model (EMA weights in) when it finished in-process.
        reason: why it did not finish, or None.

    Example:

    ```python
    outcome = em.train("examples/regression/mysettings_curve_fitting.py", {"nbEpoch": 3})
    outcome          # <TrainingOutcome finished: experiments/curve_fitting/my_test_... (best val_loss 0.0123 ...)>
    ```
    """

    def __init__(self, experiment, status, exit_code, model=None, reason=None):
        self.experiment = experiment
        self.status = status
        self.exit_code = exit_code
        self.model = model
        self.reason = reason

    def __repr__(self):
        where = self.experiment.root if self.experiment is not None else "(a worker: the chief keeps the experiment)"
        text = f"<TrainingOutcome {self.status}: {where}"
        if self.experiment is not None:
            info = self.experiment.run_info()
            if isinstance(info.get("best_value"), (int, float)):
                text += (f" (best {info.get('monitored_loss_name')} {info['best_value']:.4g} at epoch "
                         f"{info.get('best_epoch')}, exported version {info.get('last_exported_version')})")
        if self.reason:
            text += f"; {self.reason}"
        return text + ">"
