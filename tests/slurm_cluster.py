"""A real one-node Slurm cluster for the tests: munged, slurmctld and slurmd of Debian's `slurm-wlm`, run as this
user in a temporary folder, with this host as the only node (its real CPU count and 3/4 of its memory).

Every file lives under the folder (munge key and socket, slurm.conf, state and spool, logs); the daemons run in
the foreground as our children and are stopped by PID. Client commands (`sbatch`, `squeue`, `scontrol`, ...) find
the cluster through `SLURM_CONF` in `cluster.env`.

Example:

```python
cluster = SlurmCluster(tmp_path)
cluster.start()  # stops what it started if it fails
job = cluster.submit(["--wrap", "hostname"])
cluster.wait_for_state(job, {"COMPLETED"}, 60)
cluster.stop()
```
"""

import getpass
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

CRED_EXPIRE_SECONDS = 10
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED"}
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")


def missing_binaries():
    """The Slurm and munge programs not on PATH (or in /usr/sbin): what a user must install to run these tests."""
    return [name for name in BINARIES if not _which(name)]


def _which(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


class SlurmCluster:
    """A one-node Slurm cluster under `folder`.

    Args:
        folder: an empty folder for its files (logs stay there for a failed test to show).
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.processes = {}
        self.node = socket.gethostname()
        self.conf = self.folder / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def start(self, timeout=60):
        """Starts the daemons and waits for the node to be idle; on any failure, stops what it started."""
        try:
            return self._start_daemons(timeout)
        except BaseException:
            self.stop()
            raise

    def _start_daemons(self, timeout):
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in ("munge", "state", "spool", "log"):
            (self.folder / name).mkdir(exist_ok=True)
        os.chmod(self.folder / "munge", 0o700)
        key = self.folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        self.munge_socket = self.folder / "munge" / "munge.socket"
        self._start("munged", [_which("munged"), "--foreground", f"--key-file={key}", f"--socket={self.munge_socket}",
                               f"--pid-file={self.folder / 'munge' / 'munged.pid'}",
                               f"--log-file={self.folder / 'log' / 'munged.log'}",
                               f"--seed-file={self.folder / 'munge' / 'munged.seed'}", "--force"])
        self._wait(lambda: self.munge_socket.exists(), 20, "munged's socket")
        self.conf.write_text(self._configuration())
        self._start("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._start("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf)])
        self._wait(self._node_idle, timeout, f"node {self.node} idle in sinfo")
        return self

    def _configuration(self):
        memory = _free_megabytes() * 3 // 4
        ports = _free_ports(2)
        folder = self.folder
        return "\n".join([
            "ClusterName=emtest",
            f"SlurmctldHost={self.node}",
            "AuthType=auth/munge",
            # cred_expire is also how long a requeued job waits before it may start again (default 120 s)
            f"AuthInfo=socket={self.munge_socket},cred_expire={CRED_EXPIRE_SECONDS}",
            "CredType=cred/munge",
            f"SlurmUser={getpass.getuser()}",  # the daemons run as this user, jobs too
            f"SlurmdUser={getpass.getuser()}",
            f"SlurmctldPort={ports[0]}",
            f"SlurmdPort={ports[1]}",
            f"StateSaveLocation={folder / 'state'}",
            f"SlurmdSpoolDir={folder / 'spool'}",
            f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
            f"SlurmdPidFile={folder / 'slurmd.pid'}",
            f"SlurmctldLogFile={folder / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={folder / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "JobRequeue=1",
            "ReturnToService=2",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "KillWait=30",  # Slurm's default; at 10 s a loaded CI machine's server was killed before it logged its stop
            "MinJobAge=600",
            f"NodeName={self.node} CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ])

    def _start(self, name, command):
        log = open(self.folder / "log" / f"{name}.out", "wb")
        self.processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                                start_new_session=True)
        log.close()

    def _node_idle(self):
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.logs()}")
        result = self.run(["sinfo", "--noheader", "--format=%T"], check=False)
        return result.returncode == 0 and result.stdout.strip() == "idle"

    def _wait(self, condition, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        raise RuntimeError(f"Slurm cluster: no {what} within {timeout} s\n{self.logs()}")

    def run(self, command, check=True, **options):
        """Runs a Slurm client command against this cluster; returns the CompletedProcess."""
        result = subprocess.run([_which(command[0]), *command[1:]], env=options.pop("env", self.env),
                                capture_output=True, text=True, timeout=60, **options)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: exit {result.returncode}: {result.stderr.strip()}")
        return result

    def submit(self, arguments, cwd, env=None):
        """`sbatch --parsable ARGUMENTS` from `cwd`; returns the job id (str; `J_i` ids for array tasks later)."""
        result = self.run(["sbatch", "--parsable", *arguments], cwd=cwd, env=env or self.env)
        return result.stdout.strip().split(";")[0]

    def job(self, job_id):
        """`scontrol show job` as a dict (JobState, RestartCount, ExitCode, ...), or None once Slurm forgot it."""
        result = self.run(["scontrol", "show", "job", "--oneliner", str(job_id)], check=False)
        if result.returncode != 0:
            return None
        return dict(re.findall(r"(\w+)=(\S*)", result.stdout))

    def wait_for_end(self, job_id, timeout):
        """Waits until `job_id` is in a final state (not pending, running, or in a passing state such as
        SIGNALING or REQUEUED); returns `scontrol show job` as a dict."""
        return self.wait_for_job(job_id, lambda info: info["JobState"] in FINAL_STATES, timeout, "a final state")

    def wait_for_job(self, job_id, condition, timeout, what):
        """Polls `scontrol show job` until `condition(job dict)` holds; returns the dict."""
        deadline = time.monotonic() + timeout
        job = None
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job is not None and condition(job):
                return job
            time.sleep(0.25)
        raise AssertionError(f"job {job_id}: no {what} within {timeout} s; last seen {job}\n{self.logs()}")

    def logs(self, lines=30):
        """The tail of each daemon's log, for a failure message."""
        parts = []
        for path in sorted((self.folder / "log").glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def cancel_all(self, timeout=60):
        """Cancels every job and waits until the queue is empty (their processes gone, KillWait included)."""
        if "slurmctld" not in self.processes or self.processes["slurmctld"].poll() is not None:
            return
        self.run(["scancel", "--full", f"--user={getpass.getuser()}"], check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            queue = self.run(["squeue", "--noheader", "--format=%i"], check=False)
            if queue.returncode == 0 and not queue.stdout.strip():
                return
            time.sleep(0.25)

    def stop(self):
        """Cancels what is left (waiting for its processes to go), then stops every daemon this cluster started
        (TERM, then KILL), by PID."""
        self.cancel_all()
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _free_megabytes():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 2048


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()
