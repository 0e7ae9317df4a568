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
        validate: validate after each epoch on the settings' validation pipeline (default True). A federated client
            whose settings say `federated_client_validation = False` says False: it only trains, as a bare Flower
            ClientApp, and its own callbacks (best value, LR-on-plateau) follow the training counterpart of the
            monitored value (`loss` for `val_loss`); nor does the TensorBoard projector read the validation data.
        write_graph: write the model's graph to TensorBoard (default True). A federated client says False after its
            first round: each round is a session of its own, and its first wrote the graph.

    Example:

    ```python
    session = Trainer(experiment, settings).open_session(SessionOptions(export=False, early_stopping=False))
    ```
    """

    export: bool = True
    early_stopping: bool = True
    validate_raw_weights: bool = True
    validate: bool = True
    write_graph: bool = True

    def monitor_of(self, monitor: str) -> str:
        """The value this session's callbacks follow: `monitor` (the settings' `monitored_loss_name`), or its
        training counterpart when the session does not validate (`val_loss` -> `loss`)."""
        return monitor if self.validate or not monitor.startswith("val_") else monitor[len("val_"):]

