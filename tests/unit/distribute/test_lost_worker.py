"""Which task a multi-worker run lost, read from the errors TensorFlow 2.21 raised on the simulated cluster (two
nodes, one frozen mid-epoch): the messages below are theirs, cut to the lines that matter."""

import pytest

from experiments_manager.distribute.cluster import WorkerCluster
from experiments_manager.distribute.lost_worker import lost_task

# the chief (worker 0, the coordination service's task), its worker's node frozen
CHIEF_SEES_A_WORKER_GONE = (
    "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker/replica:0/task:0/device:CPU:0}}"
    " Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks are unhealthy "
    "(stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed. Check the task logs for an "
    "earlier error, or scheduler events (e.g. preemption, eviction) to debug further.\nThe error could be from a "
    "previous operation. Restart your program to reset. [Op:CollectiveReduceV2] name: ")
# worker 1, the chief's node frozen: its heartbeat to the service timed out
WORKER_SEES_THE_CHIEF_HANG = (
    "Graph execution error:\n\nDetected at node CollectiveReduceV2 defined at (most recent call last):\n"
    "Collective ops is aborted by: Deadline Exceeded\n\nRPC: /tensorflow.CoordinationService/Heartbeat\n"
    "The error could be from a previous operation. Restart your program to reset.\n\t [[{{node CollectiveReduceV2}}]]")
# worker 1, the chief's process ended (its node alive: its port refuses): not a lost node
WORKER_SEES_THE_CHIEF_GONE = (
    "Collective ops is aborted by: Failed to send RPC to coordination service. Either the leader task was "
    "preempted/died/restarted unexpectedly or this task is experiencing network issues.\nAdditional GRPC error "
    "information from remote target /job:worker/replica:0/task:0 while calling "
    "/tensorflow.CoordinationService/Heartbeat:\n:UNKNOWN:Error received from peer  {grpc_status:14, grpc_message:"
    "\"failed to connect to all addresses; last error: UNKNOWN: ipv4:10.77.0.1:23456: Connection refused\"}")

# the chief thawed after its heartbeats timed out: the service (its own) says so
ALREADY_IN_ERROR = (
    "Collective ops is aborted by: Unexpected heartbeat request from an already-in-error task: "
    "/job:worker/replica:0/task:0 with existing error: UNAVAILABLE: Task /job:worker/replica:0/task:0 heartbeat "
    "timeout. This indicates that the remote task has failed, got preempted, or crashed unexpectedly.")


@pytest.mark.parametrize("message, leader, expected", [
    (CHIEF_SEES_A_WORKER_GONE, "worker:0", "worker:1"),
    (WORKER_SEES_THE_CHIEF_HANG, "worker:0", "worker:0"),
    (WORKER_SEES_THE_CHIEF_GONE, "chief:0", None),
    (ALREADY_IN_ERROR, "worker:0", "worker:0"),
    # worker 1's code raised: the chief's collective is aborted with its error, at once: the run failed
    ("Collective ops is aborted by: Error reported from /job:worker/task:1: ValueError: worker 1 broke on purpose",
     "worker:0", None),
    ("Collective ops is aborted by: Socket closed", "worker:0", None),
    ("Incompatible shapes: [4,1] vs. [4,2]", "worker:0", None),  # the model's own error
])
def test_the_lost_task_is_read_from_tensorflows_error(message, leader, expected):
    assert lost_task(RuntimeError(message), leader) == expected


@pytest.mark.claim("a lost or hung worker ends every other worker with exit 75 and one line naming it, its host "
                   "and the epoch reached", note="(the line, from TensorFlow's error)")
def test_the_line_names_the_task_its_host_the_epoch_and_the_setting():
    cluster = WorkerCluster(2, "worker", 0, "Slurm", resolver_factory=lambda: None)
    cluster.addresses, cluster.heartbeat_timeout_seconds = {"worker": ["node1:23456", "node2:23456"]}, 10
    assert cluster.lost_worker_line(RuntimeError(CHIEF_SEES_A_WORKER_GONE), epoch=3) == (
        "worker:1 on node2:23456 of the 2 workers stopped answering (no heartbeat for 10 s) in epoch 3: its node "
        "was lost or hung (worker_heartbeat_timeout_seconds sets the wait)")
    assert cluster.lost_worker_line(ValueError("a bug"), epoch=3) is None
