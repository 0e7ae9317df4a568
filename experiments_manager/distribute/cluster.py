"""The multi-worker cluster a training process belongs to: from `TF_CONFIG`, or from a Slurm job step.

Every worker runs the same `train` command; TensorFlow's
`MultiWorkerMirroredStrategy` keeps their weights identical by all-reducing the
gradients of each step. Worker 0 (or the task of type `chief`) is the chief: the
only process that writes the experiment folder, its exports and its TensorBoard
logs. The other workers write to a private scratch folder, deleted at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional

from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.distribute.strategy import MultiWorkerStrategy

_LOG = logging.getLogger(__name__)
SLURM_PORT_RANGE = (20000, 40000)


class WorkerCluster:
    """This process' place in a multi-worker cluster.

    Args:
        num_workers: how many tasks train together.
        task_type: 'worker' or 'chief'.
        task_index: this process' index among the tasks of its type.
        source: where the cluster came from ('TF_CONFIG' or 'Slurm'), for logs.
        resolver_factory: a function returning the TensorFlow cluster resolver
            (called only when the strategy is made, so detection needs no TensorFlow).
        has_chief_task: the cluster has a task of type `chief`.

    Example:

    ```python
    cluster = WorkerCluster.from_environment()
    if cluster is not None:
        strategy = cluster.make_strategy()   # before any other TensorFlow op
        print(cluster.describe(), cluster.is_chief)
    ```
    """

    def __init__(self, num_workers: int, task_type: str, task_index: int, source: str,
                 resolver_factory: Callable[[], Any], has_chief_task: bool = False) -> None:
        self.num_workers = num_workers
        self.task_type = task_type
        self.task_index = task_index
        self.source = source
        self.resolver_factory = resolver_factory
        self.has_chief_task = has_chief_task

    @property
    def is_chief(self) -> bool:
        """The chief writes; without a `chief` task, worker 0 is the chief (TensorFlow's rule)."""
        if self.task_type == "chief":
            return True
        return not self.has_chief_task and self.task_index == 0

    def describe(self) -> str:
        role = "chief" if self.is_chief else "worker"
        return f"{role} (task {self.task_type}:{self.task_index}) of {self.num_workers} workers, from {self.source}"

    @contextlib.contextmanager
    def scratch_folder(self) -> Iterator[Path]:
        """A private temporary folder for a non-chief worker's files, deleted when the block ends."""
        with tempfile.TemporaryDirectory(prefix=f"experiments_manager_worker{self.task_index}_") as folder:
            _LOG.info("Worker %d writes nothing shared: its files go to %s (deleted at the end)",
                      self.task_index, folder)
            yield Path(folder)

    def make_strategy(self) -> MultiWorkerStrategy:
        """The `MultiWorkerMirroredStrategy` of this cluster; call it before TensorFlow runs any op."""
        from experiments_manager.distribute.strategy import MultiWorkerStrategy

        try:
            return MultiWorkerStrategy(cluster_resolver=self.resolver_factory())
        except RuntimeError as error:
            if "initialized" in str(error):
                raise UserInputError(
                    f"{self.source}: multi-worker training needs TensorFlow untouched until the strategy exists, "
                    f"but it was already initialized (does the settings module run TensorFlow ops at import?): {error}"
                ) from error
            raise

    @classmethod
    def from_environment(cls, environ: Optional[Mapping[str, str]] = None) -> Optional[WorkerCluster]:
        """The cluster named by `TF_CONFIG`, else by a Slurm step of several tasks; None for one process."""
        environ = os.environ if environ is None else environ
        if environ.get("TF_CONFIG"):
            return _from_tf_config(environ["TF_CONFIG"])
        if int(environ.get("SLURM_STEP_NUM_TASKS") or 1) > 1:
            return _from_slurm(environ)
        return None


def _from_tf_config(text: str) -> Optional[WorkerCluster]:
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        task_type, task_index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise UserInputError(
            f"TF_CONFIG: expected JSON like {{\"cluster\": {{\"worker\": [\"host:port\", ...]}}, "
            f"\"task\": {{\"type\": \"worker\", \"index\": 0}}}}, got {text!r} ({error})"
        ) from error
    unsupported = sorted(set(cluster) - {"worker", "chief"})
    if unsupported:
        raise UserInputError(f"TF_CONFIG: cluster: expected only 'worker' and 'chief' tasks "
                             f"(MultiWorkerMirroredStrategy), got {unsupported}")
    if task_type not in cluster or not 0 <= task_index < len(cluster[task_type]):
        raise UserInputError(f"TF_CONFIG: task: {task_type}:{task_index} is not in the cluster {cluster}")
    num_workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    if num_workers < 2:
        return None

    def resolver() -> Any:
        import tensorflow as tf

        return tf.distribute.cluster_resolver.TFConfigClusterResolver()

    return WorkerCluster(num_workers, task_type, task_index, "TF_CONFIG", resolver,
                         has_chief_task="chief" in cluster)


def _from_slurm(environ: Mapping[str, str]) -> WorkerCluster:
    """One worker per task of the current `srun` step; GPUs are bound by Slurm (--gpus-per-task)."""
    tasks = int(environ["SLURM_STEP_NUM_TASKS"])
    rank = int(environ.get("SLURM_PROCID", 0))
    port_base = slurm_port_base(environ.get("SLURM_JOB_ID", "0"))

    def resolver() -> Any:
        import tensorflow as tf

        most_per_node = most_tasks_per_node(environ.get("SLURM_STEP_TASKS_PER_NODE", "1"))
        # the GPU arguments only satisfy its bookkeeping: auto_set_gpu=False leaves the binding to Slurm
        return tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=port_base, gpus_per_node=most_per_node, gpus_per_task=1, auto_set_gpu=False)

    return WorkerCluster(tasks, "worker", rank, "Slurm", resolver)


def slurm_port_base(job_id: object) -> int:
    """The first port a Slurm job's workers listen on: derived from the job id, so two jobs on a node differ."""
    low, high = SLURM_PORT_RANGE
    digits = "".join(character for character in str(job_id) if character.isdigit()) or "0"
    return low + int(digits) % (high - low)


def most_tasks_per_node(tasks_per_node: str) -> int:
    """The largest count in Slurm's SLURM_STEP_TASKS_PER_NODE, e.g. '2(x3),1' -> 2."""
    return max(int(part.split("(")[0]) for part in tasks_per_node.split(","))
