"""The job templates of tools/slurm/, submitted with a real `sbatch` to a real one-node Slurm cluster
(tests/slurm_cluster.py): signals, requeues and restarts are Slurm's own. The one stand-in is `apptainer`
(tests/data/apptainer_standin), which runs the image's command with this checkout.

The templates are submitted as shipped; the sbatch command line only scales their resources to this machine
(`--gres=none --cpus-per-task=1 --mem=2G`: no GPU, 2 cores) and the environment names the settings and epochs, as a
user's `sbatch --export` would.
"""

import json

import numpy as np
import pytest

from conftest import REPO, read_run, settings_variant, single_experiment, slurm_job_env, wait_for

pytestmark = pytest.mark.slurm

SMALL = ["--gres=none", "--cpus-per-task=1", "--mem=2G"]
WORKING_FOLDER = "experiments/examples/curve_fitting"


def no_early_stop(workdir):
    """The regression example, without early stopping: a run's epochs are the ones it was given."""
    return settings_variant(workdir, "no_early_stop.py", ["early_stopping_patience = 1000"])


def template(name):
    return str(REPO / "tools/slurm" / name)


def job_output(workdir, pattern):
    found = sorted(workdir.glob(pattern))
    return found[0].read_text() if found else ""


def requeue_target(path):
    """The experiment (or sweep) folder a requeue file names, once written."""
    return path.read_text().strip() if path.is_file() and path.read_text().strip() else None


def checkpoints(root):
    return sorted((root / "checkpoints").glob("ckpt-*/state.json"))


def history_epochs(root):
    history = np.genfromtxt(root / "history.csv", delimiter=",", names=True)
    return list(np.atleast_1d(history["epoch"]).astype(int))


def restarts(info):
    return int(info.get("Restarts", "0"))


def test_usr1_checkpoints_then_slurm_requeues_and_the_job_resumes_the_same_experiment(slurm, workdir):
    epochs = 24
    env = slurm_job_env(slurm, SETTINGS=no_early_stop(workdir), EXTRA_ARGS=f"--hparam nbEpoch={epochs}")
    job = slurm.submit([*SMALL, template("train.sbatch")], cwd=workdir, env=env)
    requeue_file = workdir / ".slurm-requeue" / f"train-{job}"
    root = workdir / wait_for(lambda: requeue_target(requeue_file), 120, "the requeue file")
    wait_for(lambda: checkpoints(root), 120, "the first checkpoint")

    slurm.run(["scancel", "--batch", "--signal=USR1", job])  # what --signal=B:USR1@120 does before the limit
    # requeued by the job itself; Slurm starts it again once the old credential expired (cred_expire, 15 s here)
    final = slurm.wait_for_job(job, lambda info: info["JobState"] in ("COMPLETED", "FAILED"), 240, "end")
    log = job_output(workdir, f"em-train-{job}.out")
    assert final["JobState"] == "COMPLETED" and restarts(final) == 1, (final, log)

    assert single_experiment(workdir / WORKING_FOLDER) == root  # the restarted job resumed, no second folder
    info = read_run(root)
    assert info["status"] == "finished" and info["epochs_completed"] == epochs, info
    assert info["resumed_by"][-2:] == ["--requeue-file", str(requeue_file)], info["resumed_by"]
    assert history_epochs(root) == list(range(1, epochs + 1))
    # both runs in the one output file (--open-mode=append): the signal, the requeue, the restart, the end
    assert f"job {job} on " in log and ", restart 0, " in log and ", restart 1, " in log, log
    assert f"exit code 138: requeueing job {job}" in log and log.rstrip().endswith("finished"), log


def test_a_users_scancel_checkpoints_and_is_not_requeued(slurm, workdir):
    env = slurm_job_env(slurm, SETTINGS=no_early_stop(workdir), EXTRA_ARGS="--hparam nbEpoch=30")
    job = slurm.submit([*SMALL, template("train.sbatch")], cwd=workdir, env=env)
    root = workdir / wait_for(lambda: requeue_target(workdir / ".slurm-requeue" / f"train-{job}"), 120,
                              "the requeue file")
    wait_for(lambda: checkpoints(root), 120, "the first checkpoint")

    slurm.run(["scancel", job])  # Slurm sends TERM to every process of the job, KILL after KillWait
    final = slurm.wait_for_job(job, lambda info: info["JobState"] not in ("RUNNING", "COMPLETING"), 60, "the end")
    log = job_output(workdir, f"em-train-{job}.out")
    assert final["JobState"] == "CANCELLED" and restarts(final) == 0, (final, log)
    info = read_run(root)
    assert info["status"] == "interrupted" and "SIGTERM" in info["reason"], info
    state = json.loads(checkpoints(root)[-1].read_text())
    assert state["epochs_completed"] == info["epochs_completed"] > 0  # checkpointed what it had trained
    assert f"requeueing job {job}" not in log and "stopped by SIGTERM (exit code 143): not requeueing" in log, log
