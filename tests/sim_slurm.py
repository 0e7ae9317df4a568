"""A real multi-node Slurm on the simulated cluster (tests/sim_cluster.py): munged and slurmctld on this host (the
nodes reach it at 10.77.0.253, the bridge's address), one slurmd in each simulated node (its own hostname, address,
pid namespace, spool, pid and log files), so `sbatch -N2` runs a job's tasks on two nodes that see each other only
over the network and share only the GlusterFS volume.

What differs from a site's Slurm: every daemon runs as root from one configuration file; the nodes declare 2 CPUs
each (this machine has 2 in all); a node's slurmd gets an empty cgroup mount point to mount its own hierarchy on
(cgroup.conf `CgroupAutomount`: a node's /sys has none), the processes of jobs are tracked by pid
(proctrack/linuxproc); `SlurmdTimeout` is 20 s (300 s by default), so a frozen node is marked down in seconds, and
`KillWait` 10 s. The
files live under /var/tmp (each node's /tmp is private to it).

Example:

```python
cluster = SimSlurm(folder, sim_cluster).start()
job = cluster.submit(["-N2", "--wrap", "srun hostname"], cwd=folder)
cluster.wait_for_end(job, 60)
cluster.stop()
```
"""

import shutil
import socket
import subprocess

from slurm_cluster import SlurmCluster

NODES = ("node1", "node2", "node3")
CONTROLLER_ADDRESS = "10.77.0.253"  # this host, on the simulated cluster's bridge
SLURMD_TIMEOUT_S = 20


class SimSlurm(SlurmCluster):
    """Slurm over the simulated nodes.

    Args:
        folder: a folder outside /tmp, seen by every node (its files: munge, state, spools, logs).
        sim_cluster: the `SimCluster`, up with `NODES`.
    """

    def __init__(self, folder, sim_cluster):
        super().__init__(folder)
        self.sim_cluster = sim_cluster
        self.controller = socket.gethostname()

    def _start_daemons(self, timeout):
        shutil.rmtree(self.folder, ignore_errors=True)  # a crashed session's state
        self.folder.mkdir(parents=True)
        (self.folder / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\nCgroupAutomount=yes\n")
        return super()._start_daemons(timeout)

    def _start(self, name, command):
        if name != "slurmd":
            return super()._start(name, command)
        for node in NODES:  # one per node, in the node's namespaces
            self.sim_cluster.run(node, "mountpoint -q /sys/fs/cgroup || mount -t tmpfs cgroup_root /sys/fs/cgroup")
            log = open(self.folder / "log" / f"slurmd-{node}.out", "wb")
            self.processes[f"slurmd-{node}"] = subprocess.Popen(
                self.sim_cluster.command(node, " ".join(command)), stdout=log, stderr=subprocess.STDOUT,
                env=self.env, start_new_session=True)
            log.close()

    def _node_idle(self):
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.logs()}")
        result = self.run(["sinfo", "--noheader", "--Node", "--format=%T"], check=False)
        return result.returncode == 0 and result.stdout.split() == ["idle"] * len(NODES)

    def _configuration(self):
        folder = self.folder
        lines = super()._configuration().splitlines()
        kept = [line for line in lines if not line.startswith(("SlurmctldHost=", "NodeName=", "PartitionName=",
                                                               "SlurmdSpoolDir=", "SlurmdPidFile=",
                                                               "SlurmdLogFile=", "KillWait="))]
        return "\n".join([
            *kept,
            f"SlurmctldHost={self.controller}({CONTROLLER_ADDRESS})",
            f"SlurmdSpoolDir={folder / 'spool'}-%n",
            f"SlurmdPidFile={folder}/slurmd-%n.pid",
            f"SlurmdLogFile={folder / 'log'}/slurmd-%n.log",
            f"SlurmdTimeout={SLURMD_TIMEOUT_S}",
            "KillWait=10",  # a frozen node's job is done with sooner (the one-node cluster's 30 s: a server's stop)
            *[f"NodeName={node} NodeAddr=10.77.0.{index} CPUs=2 RealMemory=4000 State=UNKNOWN"
              for index, node in enumerate(NODES, 1)],
            f"PartitionName=sim Nodes=node[1-{len(NODES)}] Default=YES MaxTime=INFINITE State=UP",
            "",
        ])

    def stop(self):
        """Cancels what is left, then stops the slurmds (in their nodes), slurmctld and munged."""
        self.cancel_all()
        for node in NODES:
            self.sim_cluster.run(node, "pkill -x slurmd; pkill -x slurmstepd", check=False)
        for name, process in list(self.processes.items()):
            if name.startswith("slurmd-"):
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        super().stop()
