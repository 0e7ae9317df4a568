"""TensorFlow's `MultiWorkerMirroredStrategy`, made usable by Keras 3's `fit`, plus two cluster-wide agreements.

Keras 3.15 calls `strategy.reduce` in two ways `MultiWorkerMirroredStrategy`
refuses (keras-team/keras#20585, still open): on a whole (x, y) batch structure
(`_maybe_symbolic_build`) and with `axis=0` on scalar metric values
(`reduce_per_replica`). `reduce` here maps over structures and drops the axis of
a scalar, which is what those calls mean; every other call is unchanged.
"""

from typing import Any, Optional, Sequence

import tensorflow as tf


class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`MultiWorkerMirroredStrategy` whose `reduce` accepts what Keras 3 passes it.

    Args:
        cluster_resolver: a `tf.distribute.cluster_resolver.ClusterResolver`.

    Example:

    ```python
    strategy = MultiWorkerStrategy(tf.distribute.cluster_resolver.TFConfigClusterResolver())
    seed = strategy.chief_value(seed)           # every worker now holds the chief's seed
    with strategy.scope():
        model = build_and_compile()
    model.fit(dataset)
    ```
    """

    def __init__(self, cluster_resolver: Any) -> None:
        super().__init__(cluster_resolver=cluster_resolver)
        # a tf.function: collectives run eagerly are slow and warn at every call
        self._summed = tf.function(self._sum_over_replicas)

    def reduce(self, reduce_op: Any, value: Any, axis: Optional[int]) -> Any:
        def reduce_one(one: Any) -> Any:
            first = self.experimental_local_results(one)[0]
            one_axis = None if axis is not None and first.shape.rank == 0 else axis
            return super(MultiWorkerStrategy, self).reduce(reduce_op, one, one_axis)

        return tf.nest.map_structure(reduce_one, value)

    def chief_value(self, value: int) -> int:
        """The chief's `value` (an int), on every worker. A collective: every worker must call it."""
        return int(self._summed(tf.constant(int(value), tf.int64), tf.constant(True)))

    def summed_over_workers(self, counts: Sequence[int]) -> list[int]:
        """Each entry of the int list `counts` summed over the workers (over their replicas), on every worker.
        A collective: every worker must call it."""
        return [int(total) for total in self._summed(tf.constant(counts, tf.int64), tf.constant(False)).numpy()]

    def _sum_over_replicas(self, value: tf.Tensor, first_replica_only: tf.Tensor) -> Any:
        def contribution() -> tf.Tensor:
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            kept = tf.logical_or(tf.logical_not(first_replica_only), tf.equal(replica, 0))
            return tf.where(kept, value, tf.zeros_like(value))

        return self.reduce("SUM", self.run(contribution), axis=None)
