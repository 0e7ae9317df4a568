"""`sweep --parallelism P`: Spark starts P workers of the sweep, as the tasks of a Slurm array do.

Spark is a launcher here, not a second engine: each of its P tasks runs one worker process,
`experiments-manager sweep --resume SWEEP --workers N`, which joins the sweep through its folder (`store.py`) like
any other worker: every option and scheduler works the same, a trial whose worker is gone is taken over from its
checkpoint, and a later `--resume` (with or without Spark) continues the same sweep. The worker watches the Spark
task that started it and stops (its trials checkpointed, their claims released) when the task is gone. A stop signal
to the driver reaches its workers on this machine at once (`local[P]`: the driver signals them, then waits for their
exit codes); on a cluster the driver cancels the job, Spark kills its tasks, and each worker stops on its own.

pyspark is an optional extra (`pip install 'experiments_manager[spark]'`) and needs Java 17+. With a cluster master
(`--spark-master spark://head:7077`) the executors need this package and the sweep folder on a shared file system.

Example:

```python
exit_codes, stop_signum = run_workers_on_spark(sweep.root, tasks=4, master=None, workers_per_task=1)
```
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from experiments_manager.utils.errors import UserInputError
from experiments_manager.utils.interpreter import python_command
from experiments_manager.utils.signals import LAUNCHER_PID_VARIABLE, STOP_SIGNALS, signal_handlers

if TYPE_CHECKING:
    from types import FrameType

SPARK_TASK_VARIABLE = "EXPERIMENTS_MANAGER_SPARK_TASK"  # in a worker Spark started: its task's number


def run_workers_on_spark(sweep_root: Path, tasks: int, master: Optional[str], workers_per_task: int = 1,
                         trust_code: bool = False) -> tuple[list[int], Optional[int]]:
    """Runs `tasks` Spark tasks, each one worker process of the sweep at `sweep_root`, until they end.

    Args:
        sweep_root: the sweep folder (absolute; shared with the executors on a cluster).
        tasks: Spark tasks, so worker processes, at once (`--parallelism`).
        master: a Spark master URL (`spark://host:7077`, `yarn`, ...); None: `local[tasks]` on this machine,
            bound to 127.0.0.1.
        workers_per_task: worker loops in each worker process (`--workers`; default 1).
        trust_code: the sweep was resumed with `--trust-code` (another user's code): its workers are too (default
            False).

    Returns:
        (each worker process' exit code, the stop signal that reached this process or None); on a cluster after a
        stop signal ([], the signal): the job was cancelled, and each worker stops on its own once its task is gone.

    Raises:
        UserInputError: pyspark is not installed or Spark did not start (no Java, a bad master).
        SparkJobFailed: the job failed (a task that could not start its worker, executors lost).
    """
    session = _spark_session(tasks, master)
    local = (master or "local").startswith("local")
    context = session.sparkContext
    stopped: list[int] = []

    def stop(signum: int, frame: Optional[FrameType]) -> None:
        stopped.append(signum)  # (a list's append takes no lock)
        if local:  # each worker stops as a signalled worker does; its task then returns its exit code
            _signal_local_workers(signum)
        else:  # out of the job's wait: the job is cancelled below, and each worker stops once its task is gone
            raise _Stopped()

    folder = str(sweep_root)
    try:
        with signal_handlers(stop, STOP_SIGNALS):
            codes = context.parallelize(range(tasks), tasks).map(
                lambda task: _run_worker(folder, workers_per_task, task, trust_code)).collect()
        return list(codes), (stopped[0] if stopped else None)
    except Exception as error:  # noqa: BLE001 - py4j's and pyspark's plain errors (Ctrl-C also reached the JVM)
        if not stopped:
            raise SparkJobFailed(f"--parallelism: the Spark job failed ({master or f'local[{tasks}]'}): "
                                 f"{' '.join(str(error).split())[:300]}") from None
        if not local:
            with contextlib.suppress(Exception):  # the JVM may be gone already
                context.cancelAllJobs()
        return [], stopped[0]
    finally:
        session.stop()


class _Stopped(Exception):
    """A stop signal reached the driver of a job on a cluster."""


class SparkJobFailed(Exception):
    """The Spark job itself failed (not a worker: a task that could not run one, executors lost): one line."""


def _run_worker(sweep_root: str, workers: int, task: int, trust_code: bool = False) -> int:
    """In a Spark task: one worker process of the sweep (this executor's Python), in a session of its own (Spark's
    Python daemon hangs up its process group as it shuts down), which stops once this task's process is gone."""
    command = [*python_command(), "-m", "experiments_manager", "sweep", "--resume", sweep_root, "--workers",
               str(workers), *(["--trust-code"] if trust_code else [])]
    environment = {**os.environ, LAUNCHER_PID_VARIABLE: str(os.getpid()), SPARK_TASK_VARIABLE: str(task)}
    return subprocess.run(command, env=environment, check=False, start_new_session=True).returncode


def _signal_local_workers(signum: int) -> None:
    """Sends `signum` to the worker processes this process' Spark tasks started on this machine (`local[P]`; on a
    cluster, each worker stops once Spark kills its task)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # not a process, or gone
        children.setdefault(parent, []).append(int(entry.name))
    below, workers = [os.getpid()], []
    while below:
        pid = below.pop()
        try:
            if f"{SPARK_TASK_VARIABLE}=".encode() in Path(f"/proc/{pid}/environ").read_bytes():
                workers.append(pid)  # (its trials, which inherit the variable, get the stop from it)
                continue
        except OSError:
            continue
        below += children.get(pid, [])
    for pid in workers:
        try:
            os.kill(pid, signum)
        except OSError:
            pass  # ended meanwhile


def _spark_session(tasks: int, master: Optional[str]) -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UserInputError("--parallelism: needs pyspark (pip install 'experiments_manager[spark]'), "
                             "which is not installed") from None
    master = master or f"local[{tasks}]"
    # Spark's Python workers run PYSPARK_PYTHON (default: python3 on PATH); ours has experiments_manager
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (SparkSession.builder.master(master).appName("experiments_manager sweep")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.ui.enabled", "false")
               .config("spark.python.worker.reuse", "false"))  # a task's process ends with its worker
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # this machine only (and no "resolves to loopback" warning)
        builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
    try:
        session = builder.getOrCreate()
    except Exception as error:  # py4j/pyspark raise plain exceptions for a missing JVM or a bad master
        java = shutil.which("java") or "no java on PATH"
        raise UserInputError(f"--parallelism: Spark did not start on master {master} (java: {java}): "
                             f"{' '.join(str(error).split())[:300]}") from None
    session.sparkContext.setLogLevel("ERROR")
    return session

