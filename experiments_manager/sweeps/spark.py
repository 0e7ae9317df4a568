"""Parallel trials through Spark: hyperopt's SparkTrials on a local[P] or cluster Spark session.

pyspark is an optional extra (`pip install 'experiments_manager[spark]'`) and
needs Java 17+. Each Spark task runs one trial process, as a sequential sweep does.
"""

import os
import shutil
import sys
from typing import Optional

from hyperopt.spark import SparkTrials

from experiments_manager.utils.errors import UserInputError
from experiments_manager.sweeps.trials import FirstFreeTrialIds


class SweepSparkTrials(FirstFreeTrialIds, SparkTrials):
    """The Trials of a parallel sweep."""


def spark_trials(parallelism: int, master: Optional[str] = None) -> SweepSparkTrials:
    """SparkTrials running `parallelism` trials at once.

    Args:
        parallelism: the most trials at once.
        master: a Spark master URL (`spark://host:7077`, `yarn`, ...); default
            `local[parallelism]` on this machine, bound to 127.0.0.1.

    Raises:
        UserInputError: pyspark is not installed or Spark did not start (no Java, a bad master).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UserInputError("--parallelism: needs pyspark (pip install 'experiments_manager[spark]'), "
                             "which is not installed") from None
    master = master or f"local[{parallelism}]"
    # Spark's Python workers run PYSPARK_PYTHON (default: python3 on PATH); ours has experiments_manager
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (SparkSession.builder.master(master).appName("experiments_manager sweep")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.ui.enabled", "false"))
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
    return SweepSparkTrials(parallelism=parallelism, spark_session=session)


def stop_spark(trials: SparkTrials) -> None:
    """Stops the Spark session of `trials` (its JVM and workers)."""
    session = getattr(trials, "_spark", None)
    if session is not None:
        session.stop()
