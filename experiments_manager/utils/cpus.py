"""The CPUs this process may run on: its affinity, which a Slurm allocation (or `taskset`) sets, not the node's count.

Example:

```python
from experiments_manager.utils.cpus import usable_cpus

ray_init_args = {"num_cpus": min(usable_cpus(), num_clients)}
```
"""

import os


def usable_cpus() -> int:
    """How many CPUs this process may run on (`os.sched_getaffinity`; `os.cpu_count()` where the platform has no
    affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
