"""Feeds TensorBoard's HParams dashboard: the run's hparams, its best monitored value and its status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional, Union

import keras

from experiments_manager.callbacks.summary_writers import shared_writers
from experiments_manager.utils.epochs import shown_epoch

if TYPE_CHECKING:
    from experiments_manager.callbacks.best_value import BestValue
    from experiments_manager.callbacks.summary_writers import WritersOrFolder


class HParamsLogger(keras.callbacks.Callback):
    """Writes the HParams session of this run and `best_<monitor>` each epoch.

    The session lives in the experiment's `logs/` folder. No experiment
    (`hparams_config`) summary is written: TensorBoard then builds the HParams
    table from every session it finds under its logdir, so one experiment, a
    working folder, a sweep's trials or a parent of several working folders all
    show every hparam of every run (a config per run would make TensorBoard pick
    one run's columns for all). Integer hparams are logged as text, which
    TensorBoard shows as written ("32", not "32.000"). The session's status is
    written when the run ends (`experiments_manager.run.hparams_status`).

    Args:
        writers: the experiment's `SummaryWriters` (or its logs folder).
        hparams: the settings' hparams (values TensorBoard cannot show are logged as text).
        best: the `BestValue` (updated earlier in the same epoch).
        trial_id: the run's name in the HParams table (unique per run).
        write_session_start: False on resume, where the session already exists.

    Example:

    ```python
    HParamsLogger("logs", {"lr": 0.1, "batchSize": 32}, best, trial_id="10:00:05 lr=0.1 (11-22 my_test)")
    ```
    """

    def __init__(self, writers: WritersOrFolder, hparams: Mapping[str, Any], best: BestValue, trial_id: str,
                 write_session_start: bool = True) -> None:
        super().__init__()
        self.writers = shared_writers(writers)
        self.hparams = hparams
        self.best = best
        self.trial_id = trial_id
        self.write_session_start = write_session_start

    @property
    def best_tag(self) -> str:
        return f"best_{self.best.monitor}"

    def on_train_begin(self, logs: Optional[dict[str, Any]] = None) -> None:
        from tensorboard.plugins.hparams import api as hp

        if self.write_session_start:
            with self.writers.writer(".").as_default():
                hp.hparams(shown_hparams(self.hparams), trial_id=self.trial_id)
            self.writers.writer(".").flush()
            self.write_session_start = False  # a federated client calls fit once per round

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        import tensorflow as tf

        if self.best.value is None:
            return
        with self.writers.writer(".").as_default():
            tf.summary.scalar(self.best_tag, self.best.value, step=shown_epoch(epoch))
        self.writers.writer(".").flush()


def shown_hparams(hparams: Mapping[str, Any]) -> dict[str, Union[bool, float, str]]:
    """hparams as TensorBoard shows them best: bools, floats and strings as they are, everything else as text.

    Ints too: TensorBoard prints every number with 5 digits ("32.000").
    """
    return {key: value if isinstance(value, (bool, float, str)) else str(value) for key, value in hparams.items()}

