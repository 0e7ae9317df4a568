"""A worker of a multi-worker run that stopped answering: which one, read from the error TensorFlow raises.

TensorFlow's coordination service (run by the chief, or worker 0) takes a heartbeat from every task. When a task's
heartbeats stop for the heartbeat timeout (a node lost, hung or cut off), the service aborts every collective: the
surviving tasks' step fails with "Collective ops is aborted by: ... The following tasks are unhealthy (stopped
sending heartbeats): /job:worker/replica:0/task:1". When the service's own task is the one hung, the others' heartbeat
calls to it time out ("Deadline Exceeded ... RPC: /tensorflow.CoordinationService/Heartbeat") and their collectives
are aborted the same way. Either way the run cannot go on: it is the machine's failure, said in one line (exit 75)
and resumed on healthy nodes.

A task whose process ended on a live node (its code raised, it was killed) is not a lost node: its error reaches
the others at once ("Error reported from /job:worker/task:1: ..."), or its port refuses ("Connection refused"), not
after the timeout. That run failed (the task's own exit code says why): a job template must not requeue it.

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

# the markers of heartbeats that stopped (the task hung or its node is gone); any other error is not a lost node's
_UNHEALTHY = re.compile(r"unhealthy \(stopped sending heartbeats\):\s*((?:/job:\w+/replica:\d+/task:\d+\s*)+)")
_TIMED_OUT = re.compile(r"Task /job:(\w+)/replica:\d+/task:(\d+) heartbeat timeout")
_TASK = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")
# the service's own task hung: a heartbeat to it timed out
_LEADER_HUNG = ("Deadline Exceeded", "CoordinationService/Heartbeat")


def lost_task(error: BaseException, leader: str) -> Optional[str]:
    """The task ('worker:1', 'chief:0') whose heartbeats stopped, as `error` (raised by a collective) tells it; None
    when `error` is not a lost node's (a task that failed or was killed on a live node is not).

    Args:
        error: the error that ended the step (a `tf.errors.UnavailableError`, `DeadlineExceededError`, ...).
        leader: the task running the coordination service ('chief:0' with a chief task, else 'worker:0').
    """
    text = str(error)
    unhealthy = _UNHEALTHY.search(text)
    if unhealthy:
        return ", ".join(f"{job}:{index}" for job, index in _TASK.findall(unhealthy.group(1)))
    timed_out = _TIMED_OUT.search(text)
    if timed_out:
        return f"{timed_out.group(1)}:{timed_out.group(2)}"
    if all(marker in text for marker in _LEADER_HUNG):
        return leader
    return None
