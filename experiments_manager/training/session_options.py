"""What a driver changes about a training session: behaviour options, not the driver's identity."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class SessionOptions:
    """Behaviour options of one `TrainingSession`.

    Args:
        export: export SavedModel versions as the monitored value improves (default True).
        early_stopping: stop once the monitored value stops improving (default True). A federated client
            says False: the federation decides when training ends.
        validate_raw_weights: validate the raw weights beside the EMA ones when the settings ask for it
            (default True). A federated client says False: its validation is the federation's.

    Example:

    ```python
    session = Trainer(experiment, settings).open_session(SessionOptions(export=False, early_stopping=False))
    ```
    """

    export: bool = True
    early_stopping: bool = True
    validate_raw_weights: bool = True

