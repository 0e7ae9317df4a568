"""TensorFlow's `MultiWorkerMirroredStrategy`, made usable by Keras 3's `fit`, with a heartbeat timeout of our
choosing, plus two cluster-wide agreements.

Keras 3.15 calls `strategy.reduce` in two ways `MultiWorkerMirroredStrategy`
refuses (keras-team/keras#20585, still open): on a whole (x, y) batch structure
(`_maybe_symbolic_build`) and with `axis=0` on scalar metric values
(`reduce_per_replica`). `reduce` here maps over structures and drops the axis of
a scalar, which is what those calls mean; every other call is unchanged.

The strategy configures TensorFlow's coordination service itself, with its default heartbeat timeout (10 s), unless
the service is configured first: this one configures it as the strategy would, with the timeout given.
"""

from typing import Any, Optional, Sequence

import tensorflow as tf


class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`MultiWorkerMirroredStrategy` whose `reduce` accepts what Keras 3 passes it.

    Args:
        cluster_resolver: a `tf.distribute.cluster_resolver.ClusterResolver`.
        heartbeat_timeout_seconds: a task whose heartbeats stop for this long is lost: the coordination service
            aborts every other task's collectives (default 10, TensorFlow's).

    Example:

    ```python
    strategy = MultiWorkerStrategy(tf.distribute.cluster_resolver.TFConfigClusterResolver())
    seed = strategy.chief_value(seed)           # every worker now holds the chief's seed
    with strategy.scope():
        model = build_and_compile()
    model.fit(dataset)
    ```
    """

    def __init__(self, cluster_resolver: Any, heartbeat_timeout_seconds: int = 10) -> None:
        _configure_coordination_service(cluster_resolver, heartbeat_timeout_seconds)
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


def _configure_coordination_service(cluster_resolver: Any, heartbeat_timeout_seconds: int) -> None:
    """What `CollectiveAllReduceExtended._initialize_multi_worker` configures (TensorFlow 2.21), with the heartbeat
    timeout given: the chief and worker jobs coordinated, the service led by the chief (else worker 0)."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    cluster_spec = multi_worker_util.normalize_cluster_spec(cluster_resolver.cluster_spec())
    jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=cluster_spec.num_tasks(job))
            for job in ("chief", "worker") if job in cluster_spec.jobs]
    context.context().configure_coordination_service(
        service_type="standalone", service_leader=multi_worker_util.coordination_leader(cluster_spec),
        coordinated_jobs=jobs, heartbeat_timeout_in_ms=heartbeat_timeout_seconds * 1000)
