"""A simulated cluster of N nodes on this machine, sharing one GlusterFS volume (tests/cluster_sim/cluster-sim, from
the team's ../shared/tools; its measured semantics: ../shared/recipes/cluster-sim.md). Each node has its own
hostname, network address, pid namespace, boot id, private /tmp and its own FUSE client mount of the volume at
/cluster/shared, so cross-node visibility lags (~1-2 s) and client caches are real. A node can be frozen (every
process stopped, its file-system client too: a hung node) and thawed, or crashed.

Needs root, /dev/fuse, the cgroup v1 freezer and Debian's glusterfs-server, glusterfs-client, iproute2 and faketime
(a node's clock skewed, per process; .ci/run installs them); `missing()` says what is not there. The checkout must not be under /tmp (private to each node).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

SCRIPT = Path(__file__).resolve().parent / "cluster_sim" / "cluster-sim"
SHARED = "/cluster/shared"  # the volume, as each node mounts it (on this host: an empty folder)
HOSTS_FILE = Path("/var/lib/cluster-sim-hosts/hosts")  # the nodes' /etc/hosts (outside the script's state folder)


def missing(repo: Path) -> Optional[str]:
    """Why the simulated cluster cannot run here (one line), or None."""
    if os.geteuid() != 0:
        return "the simulated cluster needs root (namespaces, FUSE mounts, the cgroup freezer)"
    absent = [program for program in ("glusterd", "gluster", "ip", "unshare", "nsenter", "faketime")
              if shutil.which(program) is None]
    if absent:
        return (f"the simulated cluster needs {', '.join(absent)}: apt-get install glusterfs-server "
                "glusterfs-client iproute2 faketime")
    if not Path("/dev/fuse").exists() or not Path("/sys/fs/cgroup/freezer").is_dir():
        return "the simulated cluster needs /dev/fuse and the cgroup v1 freezer (/sys/fs/cgroup/freezer)"
    if str(repo).startswith("/tmp/"):
        return f"the checkout {repo} is under /tmp, which each simulated node has private: clone it elsewhere"
    return None


class SimCluster:
    """`up(n)` once; then `run` / `start` commands on a node, `freeze` / `thaw` / `crash` a node.

    Args:
        repo: the checkout (its .venv runs on every node: the host's file system is shared, except /tmp).
    """

    def __init__(self, repo: Path):
        self.repo = repo
        self.python = str(repo / ".venv" / "bin" / "python")
        self.cli = str(repo / ".venv" / "bin" / "experiments-manager")

    def _call(self, *arguments: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(SCRIPT), *arguments], capture_output=True, text=True, timeout=timeout,
                              check=True)

    def up(self, nodes: int) -> None:
        """Starts (or repairs) `nodes` nodes, none of them frozen (a failed test may have left one so), each resolving
        the others' names (`nodeI`), as a cluster's DNS does: a hosts file bound over /etc/hosts in its own mount
        namespace (this host's /etc/hosts is not changed)."""
        self._call("up", str(nodes), timeout=300)
        hosts = HOSTS_FILE
        hosts.parent.mkdir(parents=True, exist_ok=True)
        names = "".join(f"10.77.0.{index} node{index}\n" for index in range(1, nodes + 1))
        hosts.write_text(Path("/etc/hosts").read_text() + names)
        for index in range(1, nodes + 1):
            self.thaw(f"node{index}")
            subprocess.run([str(SCRIPT), "exec", f"node{index}", "sh", "-c",
                            f"grep -q node1 /etc/hosts || mount --bind {hosts} /etc/hosts"], check=True, timeout=60)

    def down(self) -> None:
        subprocess.run([str(SCRIPT), "down"], capture_output=True, text=True, timeout=300)

    def command(self, node: str, command: str) -> list[str]:
        """The argv that runs shell `command` on `node`, from the checkout (environment: the caller's)."""
        return [str(SCRIPT), "exec", node, "bash", "-c", f"cd {self.repo} && {command}"]

    def run(self, node: str, command: str, timeout: float = 300, env: Optional[dict] = None,
            check: bool = True) -> subprocess.CompletedProcess:
        """Runs shell `command` on `node` and waits; raises with its output when it fails and `check`."""
        result = subprocess.run(self.command(node, command), capture_output=True, text=True, timeout=timeout,
                                env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"{node}: {command!r} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def start(self, node: str, command: str, env: Optional[dict] = None) -> subprocess.Popen:
        """Starts shell `command` on `node` (stdout and stderr together, as text)."""
        return subprocess.Popen(self.command(node, command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env)

    def freeze(self, node: str) -> None:
        self._call("freeze", node)

    def thaw(self, node: str) -> None:
        self._call("thaw", node)

    def crash(self, node: str) -> None:
        self._call("crash", node)
