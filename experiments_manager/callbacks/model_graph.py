"""The model's graph for TensorBoard's Graphs tab."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Optional

import keras

from experiments_manager.callbacks.summary_writers import shared_writers

if TYPE_CHECKING:
    from experiments_manager.callbacks.summary_writers import WritersOrFolder

_LOG = logging.getLogger(__name__)


class ModelGraph(keras.callbacks.Callback):
    """Writes the graph of the model's inference call to the `train` run, once, when training begins.

    When the run's served module is already made (a new run's check traced and saved it), its served function's
    graph is written: the model's call as it is served, without tracing the model again (1-2 s for a
    `keras.applications` backbone). Otherwise the model is traced once for its declared inputs (`model.input`, a
    tensor, list or dict); a subclassed model without declared inputs has no graph (a
    log line says so). Keras' `TensorBoard(write_graph=True)` writes the
    training step's graph instead, which needs a hook on every batch. Tracing
    errors are logged, never raised: the graph is a view, not part of training.

    Args:
        writers: the experiment's `SummaryWriters` (or its logs folder).
        served: function returning the run's served module when it is made, else None (default None: none).

    Example:

    ```python
    model.fit(..., callbacks=[ModelGraph("logs")])   # tensorboard --logdir logs: Graphs tab
    ```
    """

    def __init__(self, writers: WritersOrFolder, served: Optional[Callable[[], Any]] = None) -> None:
        super().__init__()
        self.writers = shared_writers(writers)
        self.served = served
        self._written = False

    def on_train_begin(self, logs: Optional[dict[str, Any]] = None) -> None:
        if self._written:  # a federated client calls fit once per round
            return
        self._written = True
        try:
            self._write()
        except Exception as error:  # noqa: BLE001
            _LOG.warning("TensorBoard graph not written (%s: %s)", type(error).__name__, error)

    def _write(self) -> None:
        import tensorflow as tf

        module = self.served() if self.served is not None else None
        if module is not None:
            self._write_graph(module.served_model.get_concrete_function().graph)  # (traced: its cache)
            return
        try:
            declared = self.model.input
        except (AttributeError, ValueError):  # a Sequential model never called directly has only `inputs`
            inputs = getattr(self.model, "inputs", None) or None
            declared = inputs[0] if inputs and len(inputs) == 1 else inputs
        if declared is None:
            _LOG.info("%s: a model without declared inputs: no graph in TensorBoard", type(self.model).__name__)
            return
        specs = tf.nest.map_structure(lambda tensor: tf.TensorSpec(tensor.shape, tensor.dtype), declared)
        model = self.model
        traced = tf.function(lambda inputs: model(inputs, training=False)).get_concrete_function(specs)
        self._write_graph(traced.graph)

    def _write_graph(self, graph: Any) -> None:
        import tensorflow as tf

        writer = self.writers.writer("train")
        with writer.as_default():
            tf.summary.graph(graph)
        writer.flush()
