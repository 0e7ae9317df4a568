"""The command the tool starts its own Python processes with: a sweep's trial hosts, the workers of a multi-worker
run on one machine, `train --serve`'s server, a SuperNode's keeper and worker, a Spark sweep's tasks.

By default the interpreter running the tool (`sys.executable`). `EXPERIMENTS_MANAGER_PYTHON` replaces it with a
command, split as a shell would, as `PYSPARK_PYTHON` does for Spark's workers: a wrapper that runs the interpreter
(`nice -n 10 /opt/venv/bin/python`, `numactl --cpunodebind=0 python`, `taskset -c 2-3 python`). What the tool would
give `python` follows it (`-m experiments_manager.sweeps.trial_host ...`) with the same environment, folder and
descriptors. The process started must behave as the interpreter would: signals reach it, its exit code is
Python's, and it is a child of the process that started it (a wrapper that execs the interpreter, as those above
do: a process watches its parent and stops when it is gone). The test suite names its warm interpreter here
(tests/warm_cli.py).

Example:

```python
subprocess.Popen([*python_command(), "-m", "experiments_manager", "serve", "--model_dir", run])
```
"""

import os
import shlex
import sys

from experiments_manager.utils.errors import UserInputError

PYTHON_VARIABLE = "EXPERIMENTS_MANAGER_PYTHON"


def python_command() -> list[str]:
    """The words that start a Python process of the tool: `EXPERIMENTS_MANAGER_PYTHON` split as a shell would, or
    `[sys.executable]` where it is unset or blank. A value that cannot be split (an unclosed quote) is a
    UserInputError naming the variable."""
    value = os.environ.get(PYTHON_VARIABLE, "")
    try:
        words = shlex.split(value)
    except ValueError as error:
        raise UserInputError(f"{PYTHON_VARIABLE}: expected a command that runs Python (split as a shell would), "
                             f"got {value!r}: {error}") from None
    return words or [sys.executable]
