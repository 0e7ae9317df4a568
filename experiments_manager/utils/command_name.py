"""The command this process was started as, for the commands its hints print (`resume with: ... train --resume
RUN`): a user who ran `python -m experiments_manager` (a venv without the console script on its PATH, a notebook's
`!python -m ...`) is given that form back, one who ran `experiments-manager` that one; a Python session (`em.train`)
or a process started otherwise is given the console script's name, the form the docs use.

Example:

```python
print(f"resume with: {command_name()} train --resume {run}")
# resume with: python -m experiments_manager train --resume experiments/...   (when run so)
```
"""

import sys

CONSOLE_SCRIPT = "experiments-manager"
PYTHON_MODULE = "python -m experiments_manager"
_MAIN_MODULE = "experiments_manager.__main__"


def command_name() -> str:
    """`python -m experiments_manager` when this process runs the package's `__main__`, else `experiments-manager`."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return PYTHON_MODULE if getattr(spec, "name", None) == _MAIN_MODULE else CONSOLE_SCRIPT
