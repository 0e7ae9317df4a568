"""Feeds TensorBoard's HParams dashboard: the run's hparams and its best monitored value."""

import keras


class HParamsLogger(keras.callbacks.Callback):
    """Writes the HParams session of this run and `best_<monitor>` each epoch.

    The session lives in the experiment's `logs/` folder, so
    `tensorboard --logdir <workingFolder>` compares every experiment at once.

    Args:
        log_dir: the experiment's logs folder.
        hparams: dict of name -> bool/int/float/str.
        best: the `BestValue` (updated earlier in the same epoch).
        trial_id: a name for this run (the experiment folder name).
        write_session_start: False on resume, where the session already exists.
    """

    def __init__(self, log_dir, hparams, best, trial_id, write_session_start=True):
        super().__init__()
        self.log_dir = str(log_dir)
        self.hparams = hparams
        self.best = best
        self.trial_id = trial_id
        self.write_session_start = write_session_start
        self._writer = None

    @property
    def best_tag(self):
        return f"best_{self.best.monitor}"

    def on_train_begin(self, logs=None):
        import tensorflow as tf
        from tensorboard.plugins.hparams import api as hp

        self._writer = tf.summary.create_file_writer(self.log_dir)
        if self.write_session_start:
            with self._writer.as_default():
                hp.hparams_config(
                    hparams=[hp.HParam(name) for name in self.hparams],
                    metrics=[
                        hp.Metric(self.best_tag),
                        hp.Metric("epoch_loss", group="train", display_name="loss (train)"),
                        hp.Metric("epoch_loss", group="validation", display_name="loss (validation)"),
                    ],
                )
                hp.hparams(self.hparams, trial_id=self.trial_id)
            self._writer.flush()
            self.write_session_start = False  # a federated client calls fit once per round

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        if self.best.value is None:
            return
        with self._writer.as_default():
            tf.summary.scalar(self.best_tag, self.best.value, step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
