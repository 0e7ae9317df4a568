"""Keras callbacks whose counters survive `train --resume`."""

from typing import Any, Optional, cast

import keras

from experiments_manager.run.resume_state import PatienceState


class Resumable:
    """Mixin: saves named attributes, and puts them back after `on_train_begin`.

    Keras callbacks reset their counters in `on_train_begin`; a resumed run must
    continue with the counters of the interrupted one, so the restored values are
    applied right after that reset.

    Subclasses list the attributes to keep in `state_attributes`.
    """

    state_attributes: tuple[str, ...] = ()

    def get_state(self) -> PatienceState:
        return cast(PatienceState, {name: _plain(getattr(self, name, None)) for name in self.state_attributes})

    def set_state(self, state: Optional[PatienceState]) -> None:
        self._restored_state = dict(state or {})

    def on_train_begin(self, logs: Optional[dict[str, Any]] = None) -> None:
        super().on_train_begin(logs)  # type: ignore[misc]  # a mixin: the Keras callback after it in the MRO has it
        for name, value in getattr(self, "_restored_state", {}).items():
            if name in self.state_attributes:
                setattr(self, name, value)


def _plain(value: Any) -> Any:
    """Numpy scalars to Python numbers, for JSON."""
    return value.item() if hasattr(value, "item") else value


class ResumableEarlyStopping(Resumable, keras.callbacks.EarlyStopping):
    """`keras.callbacks.EarlyStopping` whose patience counter survives a resume.

    The epoch it stopped at is not kept: a run that stopped early is resumed only to be extended
    (`train --resume RUN --more-epochs K`), which trains on with its best value kept and its patience counter
    started over (up to `patience` epochs without improvement before it stops again): "K more epochs" trains.

    Example:

    ```python
    stopper = ResumableEarlyStopping(monitor="val_loss", patience=10)
    stopper.set_state(saved_state)  # before model.fit(...)
    ```
    """

    state_attributes = ("wait", "best", "best_epoch")
    wait: int  # set by EarlyStopping.on_train_begin

    def on_train_begin(self, logs: Optional[dict[str, Any]] = None) -> None:
        super().on_train_begin(logs)
        if self.patience and self.wait >= self.patience:  # it had stopped the run: an extension starts it over
            self.wait = 0


class ResumableReduceLROnPlateau(Resumable, keras.callbacks.ReduceLROnPlateau):
    """`keras.callbacks.ReduceLROnPlateau` whose counters survive a resume.

    The learning rate itself is an optimizer variable, saved with the optimizer.
    """

    state_attributes = ("wait", "best", "cooldown_counter")
