"""TensorBoard's projector: the model's outputs on a sample of validation data."""

from __future__ import annotations

import glob
import logging
import os
from typing import TYPE_CHECKING, Any, Optional, cast

import numpy as np
import keras

from experiments_manager.run.classification_report import class_ids
from experiments_manager.utils.atomic import replaced_atomically, write_text_atomically
from experiments_manager.utils.epochs import shown_epoch

if TYPE_CHECKING:
    import numpy.typing as npt

    from experiments_manager.utils.atomic import PathLike

    Rows = npt.NDArray[Any]  # one row of floats per sample

_LOG = logging.getLogger(__name__)
MAX_SIDE_COLUMNS = 64  # small outputs are shown beside inputs and labels this small
CALL_BYTES = 64 << 20  # the projector's sample goes through the model in calls of up to this many bytes of inputs


class ProjectorLogger(keras.callbacks.Callback):
    """At the end of training, embeds the model outputs of validation samples.

    Runs after Keras has put the EMA weights into the model (end of `fit`), so
    the projector shows what the exported model computes. The files go to
    `<run>/plugins/org_tensorflow_tensorboard_projector/` of the experiment's `validation` run, where
    TensorBoard's projector finds them from any parent logdir (the experiment,
    its working folder, a folder of several); the embedding itself is a
    checkpoint in the run folder (`projector.ckpt-<epoch>`).

    Each point is one validation sample; its metadata are its index, its label
    and the model's prediction (classes, for one-hot or class-index labels).
    Outputs of fewer than 3 values per sample cannot be projected in 3-D: they
    are shown beside the sample's inputs and label (see `embedding_of`).

    Args:
        log_dir: the experiment's `validation` run folder (e.g. `logs/validation`).
        dataset: the validation `tf.data.Dataset` of (x, y) batches.
        max_samples: how many samples to embed (default 500).

    Example:

    ```python
    model.fit(..., callbacks=[ProjectorLogger("logs/validation", val_dataset)])
    ```
    """

    def __init__(self, log_dir: PathLike, dataset: Any, max_samples: int = 500) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.dataset = dataset
        self.max_samples = max_samples

    def on_epoch_end(self, epoch: int, logs: Optional[dict[str, Any]] = None) -> None:
        self._epoch = epoch

    def on_train_end(self, logs: Optional[dict[str, Any]] = None) -> None:
        # a view for TensorBoard: whatever goes wrong here must not fail a trained run
        from experiments_manager.utils.own_train_step import has_own_train_step

        if has_own_train_step(self.model):
            _LOG.info("No TensorBoard projector: the model trains by its own train_step, so its call need not take "
                      "the validation batches (a GAN's generator takes noise)")
            return
        try:
            sample = self._sample()
            if sample is not None:
                write_projector(self.log_dir, *sample, step=shown_epoch(getattr(self, "_epoch", 0)))
        except Exception as error:  # noqa: BLE001
            _LOG.warning("TensorBoard projector not written (%s: %s)", type(error).__name__, error)

    def _sample(self) -> Optional[tuple[Optional[Rows], Rows, Optional[Rows]]]:
        """(inputs, outputs, labels) as float rows; inputs and labels are None where not numeric or too wide. The
        model is called once per `CALL_BYTES` of inputs (its eager call costs per call: Python runs every layer),
        not once per batch."""
        import tensorflow as tf

        inputs, outputs, labels, count = [], [], [], 0
        pending: list[Any] = []

        def call_pending() -> bool:
            for together in _joined(pending):
                outputs.append(_per_sample(self.model(together, training=False)))
                if outputs[-1] is None:
                    return False
            pending.clear()
            return True

        pending_bytes = 0
        for x, y in self.dataset:
            pending.append(x)
            pending_bytes += sum(_bytes_of(part) for part in tf.nest.flatten(x))
            inputs.append(_per_sample(x, MAX_SIDE_COLUMNS))
            labels.append(_per_sample(y, MAX_SIDE_COLUMNS))
            count += _samples_in(x)
            if count >= self.max_samples or pending_bytes >= CALL_BYTES:
                if not call_pending():
                    return None
                pending_bytes = 0
            if count >= self.max_samples:
                break
        if pending and not call_pending():
            return None
        if not outputs:
            return None
        return cast("tuple[Optional[Rows], Rows, Optional[Rows]]",  # outputs: never None here (returned above)
                    tuple(None if any(batch is None for batch in part)
                          else np.concatenate(cast("list[Rows]", part))[: self.max_samples]
                          for part in (inputs, outputs, labels)))


def _samples_in(batch: Any) -> int:
    """The samples of a batch of model inputs (its first tensor's rows: dense, ragged or sparse)."""
    import tensorflow as tf

    first = tf.nest.flatten(batch)[0]
    try:
        return int(first.dense_shape[0]) if isinstance(first, tf.SparseTensor) else int(tf.shape(first)[0])
    except (TypeError, ValueError, IndexError):
        return 1


def _bytes_of(tensor: Any) -> int:
    """A dense tensor's bytes; 0 for what has no fixed shape (ragged, sparse, text)."""
    try:
        return int(np.prod(tensor.shape)) * int(tensor.dtype.size)
    except (TypeError, ValueError, AttributeError):
        return 0


def _joined(batches: list[Any]) -> list[Any]:
    """`batches` of model inputs as one batch (each tensor concatenated along the samples), when they are dense
    tensors of the same shape but the first; else as they are."""
    import tensorflow as tf

    flat = [tf.nest.flatten(batch) for batch in batches]
    if len(batches) < 2 or not all(isinstance(part, (tf.Tensor, np.ndarray)) for parts in flat for part in parts) or any(
            [tuple(part.shape[1:]) for part in parts] != [tuple(part.shape[1:]) for part in flat[0]] for parts in flat):
        return batches
    return [tf.nest.pack_sequence_as(batches[0], [tf.concat(parts, axis=0) for parts in zip(*flat)])]


def _per_sample(structure: Any, max_columns: Optional[int] = None) -> Optional[Rows]:
    """Every tensor of a (nested) structure as float rows, one per sample, side by side.

    None when a tensor is not numeric (text, sparse, ragged) or there are more than `max_columns` numbers per sample.
    """
    import tensorflow as tf

    def numeric(tensor: Any) -> bool:  # a sparse or ragged tensor is neither a tf.Tensor nor an array
        if not isinstance(tensor, (tf.Tensor, np.ndarray)):
            return False
        dtype = tf.as_dtype(tensor.dtype)
        return cast(bool, dtype.is_floating or dtype.is_integer or dtype.is_bool)

    tensors = tf.nest.flatten(structure)
    if not all(numeric(tensor) for tensor in tensors):
        return None
    widths = [int(np.prod(t.shape[1:])) for t in tensors]
    if max_columns is not None and sum(widths) > max_columns:
        return None
    parts = [np.asarray(tf.cast(t, tf.float32)) for t in tensors]
    return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)


def embedding_of(inputs: Optional[Rows], outputs: Rows, labels: Optional[Rows]) -> tuple[Rows, str]:
    """(tensor N x D, its name): the outputs; outputs of fewer than 3 numbers get what makes them 3-D beside them.

    The projector's PCA view needs 3 dimensions (2 draw nothing: "variance NaN%"). Beside such outputs go the
    inputs and the true values when they are given (numeric, up to 64 numbers each: for a curve fit, the points
    x, predicted y, true y), then the error |output - label| while still short of 3 columns (an image regression).

    Args:
        inputs: N x I floats, or None (not numeric or too wide).
        outputs: N x O floats.
        labels: N x L floats, or None.
    """
    if outputs.shape[1] >= 3:
        return outputs, "model_outputs"
    parts, names = [outputs], ["outputs"]
    if inputs is not None:
        parts, names = [inputs] + parts, ["inputs"] + names
    if labels is not None:
        parts, names = parts + [labels], names + ["labels"]
        if sum(part.shape[1] for part in parts) < 3 and labels.shape == outputs.shape:
            parts, names = parts + [np.abs(outputs - labels)], names + ["error"]
    return np.concatenate(parts, axis=1), "_".join(names)


def metadata_columns(outputs: Rows, labels: Optional[Rows]) -> dict[str, list[str]]:
    """{column: values}: index, label and prediction (classes for one-hot labels or class-index labels).

    `labels` may be None (not numeric or too wide): then index and prediction only.
    """
    columns = {"index": [str(index) for index in range(len(outputs))]}
    if labels is None:
        if outputs.shape[1] == 1:
            columns["prediction"] = [f"{value:.6g}" for value in outputs[:, 0]]
        return columns
    classes = labels.shape[1] > 1 and class_ids(labels, outputs) is not None  # one-hot
    if labels.shape[1] == 1:
        columns["label"] = [f"{value:.6g}" for value in labels[:, 0]]
    elif classes:
        columns["label"] = [str(value) for value in labels.argmax(axis=1)]
    if outputs.shape[1] == 1:
        columns["prediction"] = [f"{value:.6g}" for value in outputs[:, 0]]
    elif classes or labels.shape[1] == 1 and np.all(labels == np.round(labels)):  # sparse class labels
        columns["prediction"] = [str(value) for value in outputs.argmax(axis=1)]
    return columns


def write_projector(log_dir: PathLike, inputs: Optional[Rows], outputs: Rows, labels: Optional[Rows],
                    step: int = 1) -> None:
    """Writes the embedding (a checkpoint in the run folder), its metadata and the projector config.

    The metadata TSV has a header when it has several columns. The checkpoint
    is written last and under a new name (`projector.ckpt-<step>`): TensorBoard's
    projector reloads a run when its latest checkpoint changes, so a TensorBoard
    already running shows the new embedding; the previous one is then removed.
    """
    import tensorflow as tf
    from tensorboard.plugins import projector
    from tensorboard.plugins.projector import metadata

    folder = os.path.join(log_dir, metadata.PLUGINS_DIR, metadata.PLUGIN_ASSETS_NAME)
    os.makedirs(folder, exist_ok=True)
    tensor, name = embedding_of(inputs, outputs, labels)
    columns = metadata_columns(outputs, labels)
    with replaced_atomically(os.path.join(folder, "metadata.tsv")) as tmp, open(tmp, "w") as handle:
        if len(columns) > 1:  # the projector reads a header only when there are several columns
            handle.write("\t".join(columns) + "\n")
        handle.writelines("\t".join(row) + "\n" for row in zip(*columns.values()))
    config = projector.ProjectorConfig()
    item = config.embeddings.add()
    item.tensor_name = name
    item.metadata_path = "metadata.tsv"
    write_text_atomically(os.path.join(folder, metadata.PROJECTOR_FILENAME), str(config))
    previous = glob.glob(os.path.join(glob.escape(str(log_dir)), "projector.ckpt-*"))
    prefix = f"projector.ckpt-{step}"
    tf.raw_ops.SaveV2(prefix=os.path.join(log_dir, prefix), tensor_names=[name], shape_and_slices=[""],
                      tensors=[tf.constant(tensor, tf.float32)])
    # the checkpoint state TensorBoard (tf.train.latest_checkpoint) reads, replaced last
    write_text_atomically(os.path.join(log_dir, "checkpoint"),
                          f'model_checkpoint_path: "{prefix}"\nall_model_checkpoint_paths: "{prefix}"\n')
    for path in previous:
        if not os.path.basename(path).startswith(prefix + "."):
            os.remove(path)
