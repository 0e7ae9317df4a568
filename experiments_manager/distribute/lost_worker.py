"""A worker of a multi-worker run that stopped answering: which one, read from the error TensorFlow raises.

TensorFlow's coordination service (run by the chief, or worker 0) takes a heartbeat from every task. When a task's
heartbeats stop for the heartbeat timeout (a node lost, hung or cut off), the service aborts every collective: the
surviving tasks' step fails with "Collective ops is aborted by: ... The following tasks are unhealthy (stopped
sending heartbeats): /job:worker/replica:0/task:1". When the service's own task is the one lost, the others' heartbeat
calls to it fail ("Failed to send RPC to coordination service", or a deadline exceeded on
`/tensorflow.CoordinationService/Heartbeat`) and their collectives are aborted the same way. Either way the run cannot
go on: it is the machine's failure, said in one line (exit 75) and resumed on healthy nodes.

Measured on the simulated cluster (tests/sim_cluster.py, two nodes, one frozen mid-epoch, heartbeat timeout 10 s):
the chief stopped 10 s after a worker's node froze, a worker 13 s after the chief's did.
This module does not import TensorFlow.

Example:

```python
lost = lost_task(error, leader="worker:0")   # None: not a lost task's error
if lost is not None:
    print(lost)                                 # 'worker:1'
```
"""

from __future__ import annotations

import re
from typing import Optional

# the markers of an aborted collective or a failed heartbeat; any other error is not a lost task's
_MARKERS = ("Collective ops is aborted by", "stopped sending heartbeats", "coordination service",
            "CoordinationService/Heartbeat")
_UNHEALTHY = re.compile(r"unhealthy \(stopped sending heartbeats\):\s*((?:/job:\w+/replica:\d+/task:\d+\s*)+)")
_TASK = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")
# the service's own task lost: a heartbeat to it failed (deadline exceeded, connection refused)
_LEADER_LOST = ("Failed to send RPC to coordination service", "CoordinationService/Heartbeat")
_REMOTE = re.compile(r"remote target /job:(\w+)/(?:replica:\d+/)?task:(\d+)")


def lost_task(error: BaseException, leader: str) -> Optional[str]:
    """The task ('worker:1', 'chief:0') whose heartbeats stopped, as `error` (raised by a collective) tells it;
    'a task' when it names none; None when `error` is not a lost task's.

    Args:
        error: the error that ended the step (a `tf.errors.UnavailableError`, `DeadlineExceededError`, ...).
        leader: the task running the coordination service ('chief:0' with a chief task, else 'worker:0').
    """
    text = str(error)
    if not any(marker in text for marker in _MARKERS):
        return None
    unhealthy = _UNHEALTHY.search(text)
    if unhealthy:
        return ", ".join(f"{job}:{index}" for job, index in _TASK.findall(unhealthy.group(1)))
    if any(marker in text for marker in _LEADER_LOST):
        return leader
    remote = _REMOTE.search(text)
    return f"{remote.group(1)}:{remote.group(2)}" if remote else "a task"
