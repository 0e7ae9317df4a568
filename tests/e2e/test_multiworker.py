"""Multi-worker training (MultiWorkerMirroredStrategy over loopback): same result as one worker, only the
chief writes, a stop signal reaches every worker, and a requeued job resumes through --requeue-file."""

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import REGRESSION_SETTINGS, cli_command, cli_env, process_stat, read_run, start_forked, wait_for
from experiments_manager.distribute.cluster import WorkerCluster, slurm_port_base, tasks_per_node
from experiments_manager.utils.errors import UserInputError

EPOCHS = 3
EVENT_FILE_PID = re.compile(r"events\.out\.tfevents\.\d+\.[^.]+(?:\.[^.]+)*?\.(\d+)\.\d+\.v2$")


def experiments_in(folder):
    return sorted(path.parent for path in folder.glob("experiments/examples/curve_fitting/*/run.json"))


def event_file_pids(experiment):
    return {EVENT_FILE_PID.search(path.name).group(1) for path in experiment.rglob("events.out.tfevents.*")}


def resumed_with_worker_logs(workdir, scratch, *arguments, timeout):
    """Runs the command (forked, as `run_cli`) with TMPDIR `scratch`; a command still running after `timeout`
    fails the test with the end of each worker's log (the launcher keeps them in TMPDIR until it ends), which is
    what says why a worker never joined the chief."""
    from conftest import run_command

    scratch.mkdir(exist_ok=True)
    try:
        return run_command(arguments, workdir, env=dict(cli_env(), TMPDIR=str(scratch)), capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        logs = {log: log.read_text(errors="replace").splitlines()[-40:]
                for log in sorted(scratch.glob("experiments_manager_workers_*/worker*.log"))}
        said = "\n".join(f"--- {log} ---\n" + "\n".join(lines) for log, lines in logs.items())
        raise AssertionError(f"not ended in {timeout} s; its output: {expired.stderr!r}\n{said}") from None


def layout(experiment):
    """The experiment's files, with TensorBoard event file names (time, host, pid) folded."""
    return sorted(re.sub(r"events\.out\.tfevents\..*", "events", str(path.relative_to(experiment)))
                  for path in experiment.rglob("*"))


@pytest.mark.slow
@pytest.mark.claim('`--workers N` trains one experiment in N processes; same result as one worker')
@pytest.mark.claim('only the chief writes the experiment; others use a private temporary folder, deleted at the end')
def test_two_workers_match_one_worker_and_only_the_chief_writes(workdir, run_cli, tmp_path, monkeypatch):
    scratch_parent = tmp_path / "node_local_tmp"  # where the non-chief worker may write (TMPDIR)
    scratch_parent.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch_parent))

    alone = run_cli("train", "-u", REGRESSION_SETTINGS, "--hparam", f"nbEpoch={EPOCHS}")
    assert alone.returncode == 0, alone.stderr
    (one_worker,) = experiments_in(workdir)
    together = run_cli("train", "-u", REGRESSION_SETTINGS, "--hparam", f"nbEpoch={EPOCHS}", "--workers", "2")
    assert together.returncode == 0, together.stderr
    assert "chief (task worker:0) of 2 workers, from TF_CONFIG" in together.stderr

    (two_workers,) = [path for path in experiments_in(workdir) if path != one_worker]
    info, reference = read_run(two_workers), read_run(one_worker)
    assert info["status"] == "finished" and info["workers"] == 2 and info["epochs_completed"] == EPOCHS
    assert info["seed"] == reference["seed"]
    # the same global batches, summed over two replicas instead of one: close, not bit-identical
    assert reference["best_value"] < 0.6  # it learned (an untrained model scores > 1.4)
    assert info["best_value"] == pytest.approx(reference["best_value"], rel=0.25)

    # one writer: the same files as a one-worker run, every TensorBoard file from one process,
    # and the non-chief's scratch folder deleted
    assert layout(two_workers) == layout(one_worker)
    assert len(event_file_pids(two_workers)) == 1
    assert (two_workers / "exported_models" / str(info["last_exported_version"]) / "saved_model.pb").is_file()
    assert list(scratch_parent.iterdir()) == []


@pytest.mark.slow
@pytest.mark.claim('`--requeue-file` resumes a requeued job')
@pytest.mark.claim('the first run writes its experiment folder to FILE; a rerun that finds FILE resumes it')
@pytest.mark.claim("to resume, every worker reads the chief's checkpoint")
def test_stop_signal_reaches_every_worker_and_the_requeued_job_resumes(workdir, run_cli, tmp_path):
    requeue_file = tmp_path / "requeue" / "job-1"
    command = ["train", "-u", REGRESSION_SETTINGS, "--hparam", "nbEpoch=6", "--workers", "2",
               "--requeue-file", str(requeue_file)]
    launcher = start_forked(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # its workers forked too
    try:
        root = wait_for(lambda: requeue_file.is_file() and requeue_file.read_text().strip(), 120,
                        "the requeue file")
        wait_for(lambda: (read_run(root).get("epochs_completed") or 0) >= 1, 180, "the first epoch")
        launcher.send_signal(signal.SIGUSR1)  # what `srun` or the job script forwards before the time limit
        output, _ = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 128 + signal.SIGUSR1, output
    interrupted = read_run(root)
    assert interrupted["status"] == "interrupted" and "SIGUSR1" in interrupted["reason"]
    assert interrupted["epochs_completed"] < 6
    assert "worker 1 exited" not in output  # the worker stopped the same way: nothing to report

    rerun = resumed_with_worker_logs(workdir, tmp_path / "tmp", *command, timeout=300)  # the requeued job's line
    assert rerun.returncode == 0, rerun.stderr
    assert f"names {root}: resuming it" in rerun.stderr
    assert experiments_in(workdir) == [Path(root)]
    finished = read_run(root)
    assert finished["status"] == "finished" and finished["epochs_completed"] == 6
    assert "--requeue-file" in finished["resumed_by"]


@pytest.mark.slow
@pytest.mark.claim('the workers of `--workers N` stop when their launcher is killed outright')
def test_the_workers_of_a_killed_launcher_stop_and_the_run_is_resumable(workdir):
    """`train --workers 2` killed outright (SIGKILL: nothing forwarded) takes its workers with it: they stop as on
    SIGTERM (checkpoint, `interrupted`) instead of training on, or waiting forever, as orphans."""
    launcher = subprocess.Popen(cli_command("train", "-u", REGRESSION_SETTINGS, "--hparam", "nbEpoch=50",
                                            "--workers", "2"),
                                cwd=workdir, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        (root,) = wait_for(lambda: [path.parent for path in workdir.glob("experiments/*/*/*/run.json")
                                    if (read_run(path.parent).get("epochs_completed") or 0) >= 1], 240,
                           "the first epoch")
        workers = children(launcher.pid)
        assert len(workers) == 2, workers
        launcher.kill()
        launcher.wait(timeout=30)
        wait_for(lambda: not any(running(pid) for pid in workers), 90, "the workers to stop")
    finally:
        for pid in children(launcher.pid) if launcher.poll() is None else []:
            os.kill(pid, signal.SIGKILL)
    run = read_run(root)
    assert run["status"] == "interrupted" and "SIGTERM" in run["reason"], run
    assert 1 <= run["epochs_completed"] < 50


def children(pid):
    """The pids whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = process_stat(stat.parent.name)
        if fields is not None and int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def running(pid):
    """True while `pid` runs (a zombie nobody reaped yet does not)."""
    fields = process_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


@pytest.mark.claim('the first run writes its experiment folder to FILE; a rerun that finds FILE resumes it')
def test_requeue_file_naming_a_missing_folder_is_one_line_error(workdir, run_cli, tmp_path):
    requeue_file = tmp_path / "job-2"
    requeue_file.write_text(str(tmp_path / "gone") + "\n")
    result = run_cli("train", "-u", REGRESSION_SETTINGS, "--requeue-file", str(requeue_file))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --requeue-file: {requeue_file}: expected the path of an existing folder, "
        f"got '{tmp_path / 'gone'}' (delete the file to start a new run)"
    ]
    assert experiments_in(workdir) == []


def tf_config(cluster, task_type, index):
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


def test_the_workers_ports_are_free_and_below_the_ephemeral_range():
    """A port from the kernel's ephemeral range, free when the launcher picks it, can become another process'
    source port before the worker binds it (its collectives then wait for ever): the launcher picks below it, and
    skips a port that is taken."""
    import random
    import socket

    from experiments_manager.distribute.local_workers import _ephemeral_range_start, free_loopback_ports

    low = _ephemeral_range_start()
    seed = random.randrange(2**32)
    print("seed", seed)
    first = random.Random(seed).sample(range(max(1024, low - 12000), low), 1)[0]
    taken = socket.socket()
    taken.bind(("127.0.0.1", first))  # the first candidate is somebody's
    try:
        ports = free_loopback_ports(3, rng=random.Random(seed))
    finally:
        taken.close()
    assert len(set(ports)) == 3 and first not in ports and all(1024 <= port < low for port in ports), (ports, low)
    for port in ports:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))


@pytest.mark.claim('a process joins a cluster named by `TF_CONFIG`; the chief is worker 0 or `chief`')
def test_tf_config_names_the_chief():
    workers = {"worker": ["a:1", "b:2", "c:3"]}
    assert WorkerCluster.from_environment(tf_config(workers, "worker", 0)).is_chief
    assert not WorkerCluster.from_environment(tf_config(workers, "worker", 2)).is_chief
    with_chief = {"chief": ["a:1"], "worker": ["b:2"]}
    assert WorkerCluster.from_environment(tf_config(with_chief, "chief", 0)).is_chief
    assert not WorkerCluster.from_environment(tf_config(with_chief, "worker", 0)).is_chief
    assert WorkerCluster.from_environment(tf_config({"worker": ["a:1"]}, "worker", 0)) is None  # one process
    assert WorkerCluster.from_environment({}) is None


@pytest.mark.parametrize("text, expected", [
    ("{not json", "TF_CONFIG: expected JSON like"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:2"], "ps": ["c:3"]}, "task": {"type": "worker", "index": 0}}),
     "TF_CONFIG: cluster: expected only 'worker' and 'chief' tasks (MultiWorkerMirroredStrategy), got ['ps']"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 5}}),
     "TF_CONFIG: task: worker:5 is not in the cluster"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:x"]}, "task": {"type": "worker", "index": 0}}),
     "TF_CONFIG: cluster: expected each task as 'host:port' (a port 1-65535), got 'b:x'"),
    (json.dumps({"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}),
     "TF_CONFIG: cluster: expected each task at its own 'host:port', got ['a:1'] more than once"),
])
@pytest.mark.claim('a process joins a cluster named by `TF_CONFIG`; the chief is worker 0 or `chief`')
def test_bad_tf_config_is_one_clear_error(text, expected):
    with pytest.raises(UserInputError) as error:
        WorkerCluster.from_environment({"TF_CONFIG": text})
    assert str(error.value).startswith(expected)


@pytest.mark.parametrize("changed, expected", [
    ({"SLURM_STEP_NUM_TASKS": "two"}, "SLURM_STEP_NUM_TASKS: expected a number (Slurm sets it for each task of a "
                                      "step), got 'two'"),
    ({"SLURM_PROCID": "4"}, "SLURM_PROCID: expected a task number below SLURM_STEP_NUM_TASKS=4, got 4"),
    ({"SLURM_STEP_TASKS_PER_NODE": "2"}, "SLURM_STEP_TASKS_PER_NODE: expected counts adding up to "
                                         "SLURM_STEP_NUM_TASKS=4 (e.g. '2(x2)'), got '2'"),
    ({"SLURM_STEP_NODELIST": ""}, "SLURM_STEP_NODELIST: expected the step's nodes (set by srun), got nothing"),
])
@pytest.mark.claim("a bad TF_CONFIG or Slurm step variables that disagree are one line naming the variable",
                   note="(in-process: the command's `no folder` is test_cli's)")
def test_slurm_variables_that_disagree_are_one_clear_error(changed, expected):
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_PROCID": "2", "SLURM_STEP_NUM_TASKS": "4",
             "SLURM_STEP_NODELIST": "node[07-08]", "SLURM_STEP_TASKS_PER_NODE": "2(x2)"}
    with pytest.raises(UserInputError) as error:
        WorkerCluster.from_environment({**slurm, **changed})
    assert str(error.value) == expected


@pytest.mark.claim(
    'a Slurm step of several tasks is a cluster; port 20000 + job id mod 20000; GPUs bound by Slurm',
    note='(the port rule; GPUs: not here)')
def test_a_slurm_step_of_several_tasks_is_a_cluster_resolved_by_tensorflow(monkeypatch):
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_PROCID": "2", "SLURM_STEP_NUM_TASKS": "4",
             "SLURM_STEP_NODELIST": "node[07-08]", "SLURM_STEP_TASKS_PER_NODE": "2(x2)"}
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cluster = WorkerCluster.from_environment(dict(slurm))
    assert cluster.num_workers == 4 and cluster.task_index == 2 and not cluster.is_chief
    port = slurm_port_base("4242")
    assert port == 20000 + 4242
    resolver = cluster.resolver_factory()
    assert resolver.cluster_spec().as_dict() == {
        "worker": [f"node07:{port}", f"node07:{port + 1}", f"node08:{port}", f"node08:{port + 1}"]}
    assert resolver.get_task_info() == ("worker", 2)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # GPUs are bound by Slurm (--gpus-per-task), not re-bound
    assert WorkerCluster.from_environment({"SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}) is None
    assert tasks_per_node("2(x3),1") == [2, 2, 2, 1]


@pytest.mark.slow
@pytest.mark.claim("to resume, every worker reads the chief's checkpoint")
def test_a_worker_that_starts_after_the_chief_wrote_the_requeue_file_trains_the_same_new_run(workdir, tmp_path):
    """The first run of a multi-worker job: a slow worker finds the requeue file the chief just wrote and takes the
    run for a requeued one. No checkpoint can exist yet (the chief cannot train a step without it), so resuming
    nothing is starting anew: both train the same run, in step, to its end."""
    from conftest import free_port

    requeue_file = tmp_path / "requeue" / "job-3"
    workers = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    command = cli_command("train", "-u", REGRESSION_SETTINGS, "--hparam", f"nbEpoch={EPOCHS}",
                          "--requeue-file", str(requeue_file))
    logs = [open(tmp_path / f"worker{index}.log", "w+") for index in (0, 1)]
    chief = subprocess.Popen(command, cwd=workdir, env={**cli_env(), **tf_config(workers, "worker", 0)},
                             stdout=logs[0], stderr=subprocess.STDOUT)
    late = None
    try:
        root = wait_for(lambda: requeue_file.is_file() and requeue_file.read_text().strip(), 120, "the requeue file")
        late = subprocess.Popen(command, cwd=workdir, env={**cli_env(), **tf_config(workers, "worker", 1)},
                                stdout=logs[1], stderr=subprocess.STDOUT)
        codes = [chief.wait(timeout=300), late.wait(timeout=300)]
    finally:
        for process in (chief, late):
            if process is not None and process.poll() is None:
                process.kill()
    output = [(tmp_path / f"worker{index}.log").read_text() for index in (0, 1)]
    assert codes == [0, 0], output
    assert f"names {root}: resuming it" in output[1]  # the late worker took it for a requeued job
    assert experiments_in(workdir) == [Path(root)]
    info = read_run(root)
    assert info["status"] == "finished" and info["epochs_completed"] == EPOCHS and "resumed_by" not in info
