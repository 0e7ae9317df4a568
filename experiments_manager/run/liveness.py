"""Whether a run that run.json calls `running` still has a writer: what `list` shows and `prune --failed` trusts.

run.json says `running` from a run's start until it records its end; a run killed with `kill -9`, or whose node
was lost, never records it. Its lease (`utils/lease.py`) tells the rest, by the same rules a resume applies:

- `running`: its writer may be alive (a fresh heartbeat, or a live pid on this host);
- `dead`: its writer is provably gone (its pid on this host is dead or reused, this host rebooted, or it holds
  no lease and its last attempt's pid on this host is dead); `train --resume` continues it;
- `stalled?`: its writer is on another host and its heartbeat is older than a third of the lease timeout by this
  host's clock (two missed beats: `Holder.looks_stale`). Not proof, since clocks differ between hosts: a resume
  watches the heartbeat for the timeout before it takes over.

Example:

```python
writer_state(Path("experiments/x/run_1"), Experiment("experiments/x/run_1").run_info())  # 'dead'
```
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Mapping

from experiments_manager.run.record import Status
from experiments_manager.utils.lease import LEASE_NAME
from experiments_manager.utils.lease_holder import lease_timeout, read_holder
from experiments_manager.utils.signals import process_alive

RUNNING, DEAD, STALLED = Status.RUNNING.value, "dead", "stalled?"
WRITER_STATES = (DEAD, STALLED)  # what `list` shows instead of `running`, and `--status` accepts


def writer_state(root: Path, info: Mapping[str, Any]) -> str:
    """`running`, `dead` or `stalled?` for a run whose run.json says `running` (see the module's docstring).

    Args:
        root: the run's folder.
        info: its run.json.
    """
    holder = read_holder(Path(root) / LEASE_NAME)
    if holder is None:
        attempts = info.get("attempts")
        last = attempts[-1] if isinstance(attempts, list) and attempts and isinstance(attempts[-1], dict) else {}
        pid = last.get("pid")
        here = last.get("host") == socket.gethostname()
        return DEAD if here and isinstance(pid, int) and not process_alive(pid) else RUNNING
    if holder.gone_because(lease_timeout()) is not None:  # (no watch: a holder elsewhere is never proved gone)
        return DEAD
    if holder.is_local():
        return RUNNING
    return STALLED if holder.looks_stale(lease_timeout()) else RUNNING
