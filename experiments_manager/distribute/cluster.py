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
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional

from experiments_manager.distribute.lost_worker import lost_task
from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.distribute.strategy import MultiWorkerStrategy

_LOG = logging.getLogger(__name__)
SLURM_PORT_RANGE = (20000, 40000)
_TASKS_PER_NODE = re.compile(r"(\d+)(?:\(x(\d+)\))?")


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
        self.addresses: dict[str, list[str]] = {}  # each job's 'host:port' per task, once the strategy exists
        self.heartbeat_timeout_seconds = 0  # the coordination service's, once the strategy exists

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

    @property
    def leader(self) -> str:
        """The task running TensorFlow's coordination service: the chief task, else worker 0."""
        return "chief:0" if self.has_chief_task else "worker:0"

    def make_strategy(self, heartbeat_timeout_seconds: int) -> MultiWorkerStrategy:
        """The `MultiWorkerMirroredStrategy` of this cluster; call it before TensorFlow runs any op.

        Args:
            heartbeat_timeout_seconds: a task whose heartbeats stop for this long is lost: every other task's
                step fails (`lost_worker_line` says which).
        """
        from experiments_manager.distribute.strategy import MultiWorkerStrategy

        try:
            resolver = self.resolver_factory()
            self.addresses = {job: list(tasks) for job, tasks in resolver.cluster_spec().as_dict().items()}
            self.heartbeat_timeout_seconds = heartbeat_timeout_seconds
            return MultiWorkerStrategy(cluster_resolver=resolver, heartbeat_timeout_seconds=heartbeat_timeout_seconds)
        except RuntimeError as error:
            if "initialized" in str(error):
                raise UserInputError(
                    f"{self.source}: multi-worker training needs TensorFlow untouched until the strategy exists, "
                    f"but it was already initialized (does the settings module run TensorFlow ops at import?): {error}"
                ) from error
            raise

    def lost_worker_line(self, error: BaseException, epoch: int) -> Optional[str]:
        """'worker:1 on node2:20001 stopped answering (no heartbeat for 10 s) in epoch 3: ...' when `error` says a
        task's heartbeats stopped (`lost_worker.lost_task`), else None (a task whose code failed is not lost).
        `epoch`: the epoch in progress."""
        task = lost_task(error, self.leader)
        if task is None:
            return None
        named = []
        for one in task.split(", "):
            job, _, index = one.partition(":")
            tasks = self.addresses.get(job, [])
            named.append(f"{one} on {tasks[int(index)]}" if index.isdigit() and int(index) < len(tasks) else one)
        return (f"{', '.join(named)} of the {self.num_workers} workers stopped answering (no heartbeat for "
                f"{self.heartbeat_timeout_seconds} s) in epoch {epoch}: its node was lost or hung "
                f"(worker_heartbeat_timeout_seconds sets the wait)")

    @classmethod
    def from_environment(cls, environ: Optional[Mapping[str, str]] = None) -> Optional[WorkerCluster]:
        """The cluster named by `TF_CONFIG`, else by a Slurm step of several tasks; None for one process."""
        environ = os.environ if environ is None else environ
        if environ.get("TF_CONFIG"):
            return _from_tf_config(environ["TF_CONFIG"])
        if (environ.get("SLURM_STEP_NUM_TASKS") or "1") != "1":  # a step of several tasks (or a malformed count)
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
    addresses = [address for job in ("chief", "worker") for address in cluster.get(job, [])]
    for address in addresses:
        host, _, port = str(address).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UserInputError(f"TF_CONFIG: cluster: expected each task as 'host:port' (a port 1-65535), "
                                 f"got {address!r}")
    repeated = sorted({address for address in addresses if addresses.count(address) > 1})
    if repeated:
        raise UserInputError(f"TF_CONFIG: cluster: expected each task at its own 'host:port', got {repeated} "
                             "more than once")
    num_workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    if num_workers < 2:
        return None

    def resolver() -> Any:
        import tensorflow as tf

        return tf.distribute.cluster_resolver.TFConfigClusterResolver()

    return WorkerCluster(num_workers, task_type, task_index, "TF_CONFIG", resolver,
                         has_chief_task="chief" in cluster)


def _from_slurm(environ: Mapping[str, str]) -> WorkerCluster:
    """One worker per task of the current `srun` step; GPUs are bound by Slurm (--gpus-per-task). The step's
    variables are checked first: a job script that sets them by hand (or a step they disagree in) is one line."""
    tasks = _slurm_number(environ, "SLURM_STEP_NUM_TASKS")
    rank = _slurm_number(environ, "SLURM_PROCID")
    if rank >= tasks:
        raise UserInputError(f"SLURM_PROCID: expected a task number below SLURM_STEP_NUM_TASKS={tasks}, got {rank}")
    per_node = environ.get("SLURM_STEP_TASKS_PER_NODE", "")
    counts = tasks_per_node(per_node)
    if sum(counts) != tasks:
        raise UserInputError(f"SLURM_STEP_TASKS_PER_NODE: expected counts adding up to SLURM_STEP_NUM_TASKS={tasks} "
                             f"(e.g. '2(x{tasks // 2})'), got {per_node!r}")
    if not environ.get("SLURM_STEP_NODELIST"):
        raise UserInputError("SLURM_STEP_NODELIST: expected the step's nodes (set by srun), got nothing")
    port_base = slurm_port_base(environ.get("SLURM_JOB_ID", "0"))

    def resolver() -> Any:
        import tensorflow as tf

        most_per_node = max(counts)
        # the GPU arguments only satisfy its bookkeeping: auto_set_gpu=False leaves the binding to Slurm
        return tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=port_base, gpus_per_node=most_per_node, gpus_per_task=1, auto_set_gpu=False)

    return WorkerCluster(tasks, "worker", rank, "Slurm", resolver)


def slurm_port_base(job_id: object) -> int:
    """The first port a Slurm job's workers listen on: derived from the job id, so two jobs on a node differ."""
    low, high = SLURM_PORT_RANGE
    digits = "".join(character for character in str(job_id) if character.isdigit()) or "0"
    return low + int(digits) % (high - low)


def tasks_per_node(text: str) -> list[int]:
    """Slurm's SLURM_STEP_TASKS_PER_NODE as one count per node, e.g. '2(x3),1' -> [2, 2, 2, 1]; [] when malformed."""
    counts: list[int] = []
    for part in text.split(","):
        found = _TASKS_PER_NODE.fullmatch(part.strip())
        if found is None:
            return []
        counts += [int(found.group(1))] * int(found.group(2) or 1)
    return counts


def _slurm_number(environ: Mapping[str, str], name: str) -> int:
    value = environ.get(name, "")
    if not value.isdigit():
        raise UserInputError(f"{name}: expected a number (Slurm sets it for each task of a step), got {value!r}")
    return int(value)
