"""The command the tool starts its own Python processes with: a sweep's trial hosts, the workers of a multi-worker
run on one machine, `train --serve`'s server, a SuperNode's keeper and worker, a Spark sweep's tasks.

By default the interpreter running the tool (`sys.executable`). `EXPERIMENTS_MANAGER_PYTHON` replaces it with a
command, split as a shell would: a wrapper that execs the interpreter (`nice -n 10 /opt/venv/bin/python`,
`numactl --cpunodebind=0 /opt/venv/bin/python`, `taskset -c 2-3 /opt/venv/bin/python`). What the tool would give
`python` follows it (`-m experiments_manager.sweeps.trial_host ...`). The process started must be the interpreter as
the tool sees it: the same environment, folder, descriptors and process group, signals reaching it, Python's exit
code, and the starter as its parent (a process watches its parent and stops when it is gone). A wrapper that closes
descriptors (`sudo`), clears the environment (`env -i`), keeps running beside Python (`conda run`) or starts a
session (`setsid`) breaks that. The command applies at every level: a trial host a Spark task starts is started with
it too. The test suite names its warm interpreter here (tests/warm_cli.py).

Example:

```python
subprocess.Popen([*python_command(), "-m", "experiments_manager", "serve", "--model_dir", run])
```
"""

import os
import shlex
import shutil
import sys

from experiments_manager.utils.errors import UserInputError

PYTHON_VARIABLE = "EXPERIMENTS_MANAGER_PYTHON"


def python_command() -> list[str]:
    """The words that start a Python process of the tool: `EXPERIMENTS_MANAGER_PYTHON` split as a shell would, or
    `[sys.executable]` where it is unset or blank. A value that cannot be split (an unclosed quote) or whose program
    is not found is a UserInputError naming the variable."""
    value = os.environ.get(PYTHON_VARIABLE, "")
    try:
        words = shlex.split(value)
    except ValueError as error:
        raise UserInputError(f"{PYTHON_VARIABLE}: expected a command that runs Python (split as a shell would), "
                             f"got {value!r}: {error}") from None
    if words and shutil.which(words[0]) is None:
        raise UserInputError(f"{PYTHON_VARIABLE}: expected a command that runs Python, got {value!r}: "
                             f"no program {words[0]!r} (an executable file, or one on PATH)")
    return words or [sys.executable]
