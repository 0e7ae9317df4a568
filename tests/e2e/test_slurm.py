"""The job templates of tools/slurm/, submitted with a real `sbatch` to a real one-node Slurm cluster
(tests/slurm_cluster.py): signals, requeues and restarts are Slurm's own. The one stand-in is `apptainer`
(tests/data/apptainer_standin): with an image built by `make image` (EM_IMAGE_ROOT; CI builds one) it runs the
templates' `apptainer run` inside that image with bubblewrap, so the jobs train, requeue, sweep and serve with what
the image holds (each run's attempts record the image they ran in); without one, with this checkout.

The templates are submitted as shipped; the sbatch command line only scales their resources to this machine
(`--gres=none --cpus-per-task=1 --mem=2G`: no GPU, 2 cores) and the environment names the settings and epochs, as a
user's `sbatch --export` would.
"""

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import (HELD_AT_THE_SECOND_EPOCH, REPO, built_image, read_run, settings_variant, single_experiment,
                      slurm_job_env, wait_for)
from slurm_cluster import FINAL_STATES

pytestmark = pytest.mark.slurm

SMALL = ["--gres=none", "--cpus-per-task=1", "--mem=2G"]
WORKING_FOLDER = "experiments/examples/curve_fitting"


@pytest.fixture(autouse=True)
def no_job_left(slurm):
    """Whatever a test leaves in the queue (it failed before its own scancel) is cancelled before the next one:
    the node has a CPU per job and 2 CPUs."""
    yield
    slurm.cancel_all()


def no_early_stop(workdir):
    """The regression example, without early stopping: a run's epochs are the ones it was given."""
    return settings_variant(workdir, "no_early_stop.py", ["early_stopping_patience = 1000"])


def template(name):
    return str(REPO / "tools/slurm" / name)


def job_output(workdir, pattern):
    found = sorted(workdir.glob(pattern))
    return found[0].read_text() if found else ""


def wait_while_running(slurm, job, condition, timeout, what, log):
    """Polls `condition` like `wait_for`, but fails at once when `job` ends; a failure shows the job's state and its
    output file `log` (a server that could not bind its port ends its job with the reason in that file)."""
    deadline, checked = time.monotonic() + timeout, 0.0
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if time.monotonic() - checked > 1:
            checked, info = time.monotonic(), slurm.job(job)
            if info is None or info["JobState"] in FINAL_STATES:
                break
        time.sleep(0.05)
    info = slurm.job(job)
    raise AssertionError(f"job {job}: no {what} after {timeout - (deadline - time.monotonic()):.0f} s "
                         f"(state {info and info['JobState']}); its output:\n{job_output(log.parent, log.name)}")


def requeue_target(path):
    """The experiment (or sweep) folder a requeue file names, once written."""
    return path.read_text().strip() if path.is_file() and path.read_text().strip() else None


def checkpoints(root):
    return sorted((root / "checkpoints").glob("ckpt-*/state.json"))


def history_epochs(root):
    history = np.genfromtxt(root / "history.csv", delimiter=",", names=True)
    return list(np.atleast_1d(history["epoch"]).astype(int))


def ran_in_the_image(run):
    """Every attempt of `run` (run.json) ran in the built image (`container`, Apptainer's APPTAINER_CONTAINER), or,
    with no image built, outside any container."""
    image = built_image()
    return [attempt.get("container") for attempt in run["attempts"]] == [str(image) if image else None] * len(
        run["attempts"])


def restarts(info):
    return int(info.get("Restarts", "0"))


@pytest.mark.claim("run.json's `attempts[].container` names the image a run ran in", note='(both attempts)')
@pytest.mark.claim('the signal is forwarded to the run, then `scontrol requeue`')
@pytest.mark.claim('the run finishes its step, checkpoints and exits 138')
@pytest.mark.claim(
    'the requeued job runs the same command line with the same `--requeue-file`',
    note='(`resumed_by` ends with the requeue file; `SLURM_RESTART_COUNT=1` in the log)')
@pytest.mark.claim('the first run writes its experiment folder to FILE; a rerun that finds FILE resumes it')
def test_usr1_checkpoints_then_slurm_requeues_and_the_job_resumes_the_same_experiment(slurm, workdir):
    epochs = 12
    env = slurm_job_env(slurm, SETTINGS=no_early_stop(workdir), EXTRA_ARGS=f"--hparam nbEpoch={epochs}")
    job = slurm.submit([*SMALL, template("train.sbatch")], cwd=workdir, env=env)
    requeue_file = workdir / ".slurm-requeue" / f"train-{job}"
    root = workdir / wait_for(lambda: requeue_target(requeue_file), 120, "the requeue file")
    wait_for(lambda: checkpoints(root), 120, "the first checkpoint")

    slurm.run(["scancel", "--batch", "--signal=USR1", job])  # what --signal=B:USR1@120 does before the limit
    # requeued by the job itself; Slurm starts it again once the old credential expired (cred_expire, 10 s here)
    final = slurm.wait_for_end(job, 240)
    log = job_output(workdir, f"em-train-{job}.out")
    assert final["JobState"] == "COMPLETED" and restarts(final) == 1, (final, log)

    assert single_experiment(workdir / WORKING_FOLDER) == root  # the restarted job resumed, no second folder
    info = read_run(root)
    assert info["status"] == "finished" and info["epochs_completed"] == epochs, info
    assert info["resumed_by"][-2:] == ["--requeue-file", str(requeue_file)], info["resumed_by"]
    assert ran_in_the_image(info) and len(info["attempts"]) == 2, info["attempts"]
    assert history_epochs(root) == list(range(1, epochs + 1))
    # both runs in the one output file (--open-mode=append): the signal, the requeue, the restart, the end
    assert f"job {job} on " in log and ", restart 0, " in log and ", restart 1, " in log, log
    assert f"exit code 138: requeueing job {job}" in log and log.rstrip().endswith("finished"), log


@pytest.mark.claim('SIGTERM (scancel, a preemption) checkpoints (exit 143) and the job does not requeue itself')
@pytest.mark.claim('a new job given the old requeue file (`REQUEUE_FILE`) goes on with a cancelled run',
                   note='(finishes the same experiment, no second folder)')
def test_a_users_scancel_checkpoints_and_is_not_requeued_and_a_new_job_goes_on_with_it(slurm, workdir):
    epochs = 20
    env = slurm_job_env(slurm, SETTINGS=no_early_stop(workdir), EXTRA_ARGS=f"--hparam nbEpoch={epochs}")
    job = slurm.submit([*SMALL, template("train.sbatch")], cwd=workdir, env=env)
    requeue_file = workdir / ".slurm-requeue" / f"train-{job}"
    root = workdir / wait_for(lambda: requeue_target(requeue_file), 120, "the requeue file")
    wait_for(lambda: checkpoints(root), 120, "the first checkpoint")

    slurm.run(["scancel", job])  # Slurm sends TERM to every process of the job, KILL after KillWait
    final = slurm.wait_for_end(job, 60)
    log = job_output(workdir, f"em-train-{job}.out")
    assert final["JobState"] == "CANCELLED" and restarts(final) == 0, (final, log)
    info = read_run(root)
    assert info["status"] == "interrupted" and "SIGTERM" in info["reason"], info
    state = json.loads(checkpoints(root)[-1].read_text())
    assert state["epochs_completed"] == info["epochs_completed"] > 0  # checkpointed what it had trained
    assert f"requeueing job {job}" not in log and "stopped by SIGTERM (exit code 143): not requeueing" in log, log

    # what install/README.md tells a user who wants the cancelled run back: a new job on the old requeue file
    second = slurm.submit([*SMALL, template("train.sbatch")], cwd=workdir,
                          env={**env, "REQUEUE_FILE": str(requeue_file)})
    final = slurm.wait_for_end(second, 240)
    log = job_output(workdir, f"em-train-{second}.out")
    assert final["JobState"] == "COMPLETED" and restarts(final) == 0, (final, log)
    assert single_experiment(workdir / WORKING_FOLDER) == root  # the same experiment, no second folder
    info = read_run(root)
    assert info["status"] == "finished" and info["epochs_completed"] == epochs, info
    assert [attempt["status"] for attempt in info["attempts"]] == ["interrupted", "finished"], info["attempts"]
    assert history_epochs(root) == list(range(1, epochs + 1))


def short_settings(workdir, epochs):
    """The regression example with `epochs` epochs as its own default and no early stopping: for templates whose
    command line has no EXTRA_ARGS (array.sbatch's CONFIGS)."""
    return settings_variant(workdir, f"short_{epochs}.py", [
        "early_stopping_patience = 1000", f"hparams['nbEpoch'] = {epochs}", f"nbEpoch = {epochs}"])


@pytest.mark.claim('array jobs: each task its own config and requeue file')
def test_array_tasks_train_their_own_configs_and_one_is_requeued_alone(slurm, workdir):
    epochs = 8
    env = slurm_job_env(slurm, SETTINGS=short_settings(workdir, epochs))
    array = slurm.submit([*SMALL, "--array=0-1", template("array.sbatch")], cwd=workdir, env=env)
    tasks = [f"{array}_{index}" for index in (0, 1)]
    roots = [workdir / wait_for(lambda: requeue_target(workdir / ".slurm-requeue" / f"array-{task}"), 120,
                                f"task {task}'s requeue file") for task in tasks]
    wait_for(lambda: checkpoints(roots[1]), 120, "task 1's first checkpoint")

    slurm.run(["scancel", "--batch", "--signal=USR1", tasks[1]])  # task 1 alone is told to stop
    ends = [slurm.wait_for_end(task, 300) for task in tasks]
    logs = [job_output(workdir, f"em-array-{task}.out") for task in tasks]
    assert [info["JobState"] for info in ends] == ["COMPLETED", "COMPLETED"], logs
    assert [restarts(info) for info in ends] == [0, 1], logs
    assert f"exit code 138: requeueing array task {tasks[1]}" in logs[1] and "requeueing" not in logs[0], logs

    runs = [read_run(root) for root in roots]
    assert len(set(roots)) == 2 and sorted(root.parent for root in roots) == [workdir / WORKING_FOLDER] * 2
    assert [run["hparams"]["hiddenNeurons"] for run in runs] == [16, 64]  # CONFIGS[0] and CONFIGS[1]
    assert all(run["status"] == "finished" and run["epochs_completed"] == epochs for run in runs), runs
    assert all(ran_in_the_image(run) for run in runs)
    assert "resumed_by" not in runs[0] and runs[1]["resumed_by"][-1] == str(workdir / ".slurm-requeue" /
                                                                             f"array-{tasks[1]}")


@pytest.mark.claim('... for a sweep folder')
def test_a_sweep_signalled_mid_trial_is_requeued_and_retrains_no_finished_trial(slurm, workdir):
    import csv

    settings = settings_variant(workdir, "held.py", HELD_AT_THE_SECOND_EPOCH)
    env = slurm_job_env(slurm, SETTINGS=settings, MAX_EVALS=3, EXTRA_ARGS="--hparam nbEpoch=4 --seed 7")
    job = slurm.submit([*SMALL, template("sweep.sbatch")], cwd=workdir, env=env)
    requeue_file = workdir / ".slurm-requeue" / f"sweep-{job}"
    folder = workdir / wait_for(lambda: requeue_target(requeue_file), 120, "the requeue file naming the sweep")

    def rows():
        path = folder / "results.csv"
        return list(csv.DictReader(path.open())) if path.is_file() else []

    def second_trial_trained_an_epoch():
        started = sorted(path.parent for path in folder.glob("*/run.json"))
        running = [path for path in started if read_run(path)["status"] == "running"]
        return len(rows()) == 1 and running and read_run(running[0])["epochs_completed"] >= 1 and running[0]

    wait_for(lambda: len(rows()) == 1, 240, "the first trial's result")
    (workdir / "hold").touch()  # the second trial, still starting, will wait before its second epoch
    second = wait_for(second_trial_trained_an_epoch, 240, "the second trial's first epoch")
    first = {row["experiment"]: read_run(row["experiment"]) for row in rows()}
    slurm.run(["scancel", "--batch", "--signal=USR1", job])
    wait_for(lambda: "received SIGUSR1: stopping this worker's running trials" in
             job_output(workdir, f"em-sweep-{job}.out"), 120, "the sweep to pass USR1 to its trial")
    (workdir / "release").touch()  # the trial, signalled while held, stops after its next step
    final = slurm.wait_for_end(job, 300)
    log = job_output(workdir, f"em-sweep-{job}.out")
    assert final["JobState"] == "COMPLETED" and restarts(final) == 1, log
    assert f"exit code 138: requeueing job {job}" in log and log.rstrip().endswith("sweep finished"), log

    assert json.loads((folder / "sweep.json").read_text())["status"] == "finished"
    assert [row["status"] for row in rows()] == ["finished"] * 3
    assert len(list(folder.glob("*/run.json"))) == 3, "the stopped trial went on in its own folder"
    for experiment, run in first.items():
        assert read_run(experiment) == run, "a finished trial was trained again"
    second_run = read_run(second)
    assert second_run["status"] == "finished" and second_run["epochs_completed"] == 4 and "resumed_by" in second_run
    assert ran_in_the_image(second_run)


def sweep_array_state(folder):
    """(results.csv rows, {trial number: record}) of a sweep run by workers."""
    import csv

    path = folder / "results.csv"
    rows = list(csv.DictReader(path.open())) if path.is_file() else []
    records = {json.loads(record.read_text())["tid"] + 1: json.loads(record.read_text())
               for record in sorted((folder / "trials").glob("trial-[0-9]*.json"))}
    return rows, records


def held_trials(folder):
    """The records of trials running that have checkpointed an epoch."""
    held = []
    for record in sweep_array_state(folder)[1].values():
        experiment = record.get("experiment")
        if record["status"] == "running" and experiment and (Path(experiment) / "run.json").is_file() and \
                read_run(experiment)["epochs_completed"] >= 1:
            held.append(record)
    return held


def held_trial(folder):
    """A record whose trial is running and has checkpointed an epoch, or None."""
    return next(iter(held_trials(folder)), None)


def trial_lines(logs):
    """{trial number: how many task logs reported it trained}."""
    counts = {}
    for log in logs:
        for number in re.findall(r"^trial (\d+)/\d+ val_loss=", log, re.MULTILINE):
            counts[int(number)] = counts.get(int(number), 0) + 1
    return counts


def assert_finished_once_each(folder, max_evals, epochs):
    """Every trial finished once, in its own experiment, each epoch trained once; the Trials pickle loads."""
    import pickle

    rows, records = sweep_array_state(folder)
    spec = json.loads((folder / "sweep.json").read_text())
    assert spec["status"] == "finished" and spec["trials_done"] == max_evals, spec
    assert sorted(int(row["trial"]) for row in rows) == list(range(1, max_evals + 1))
    assert [row["status"] for row in rows] == ["finished"] * max_evals, rows
    assert sorted(records) == list(range(1, max_evals + 1))
    experiments = sorted(path.parent for path in folder.glob("*/run.json"))
    assert len(experiments) == max_evals and {row["experiment"] for row in rows} == {str(p) for p in experiments}
    for experiment in experiments:
        assert read_run(experiment)["epochs_completed"] == epochs and history_epochs(experiment) == \
            list(range(1, epochs + 1)), experiment
    with open(folder / "trials.pickle", "rb") as handle:
        trials = pickle.load(handle)
    assert len(trials.trials) == max_evals
    best = min(rows, key=lambda row: float(row["best_val_loss"]))
    assert spec["best"]["trial"] == int(best["trial"]) and min(trials.losses()) == float(best["best_val_loss"])
    return rows, records


def submit_held_sweep_array(slurm, workdir, tasks, max_evals, epochs, seed):
    """`sweep_array.sbatch` as an array of `tasks` on the settings held at the second epoch ('hold' created):
    (the array's job id, its sweep folder)."""
    settings = settings_variant(workdir, "held.py", HELD_AT_THE_SECOND_EPOCH)
    env = slurm_job_env(slurm, SETTINGS=settings, MAX_EVALS=max_evals,
                        EXTRA_ARGS=f"--hparam nbEpoch={epochs} --seed {seed}")
    (workdir / "hold").touch()
    array = slurm.submit([*SMALL, f"--array=0-{tasks - 1}", template("sweep_array.sbatch")], cwd=workdir, env=env)
    return array, workdir / WORKING_FOLDER / f"my_test_sweep_{array}"


def task_logs(workdir, array, tasks):
    return [job_output(workdir, f"em-sweep-array-{array}_{index}.out") for index in range(tasks)]


@pytest.mark.claim(
    '`--join NAME` / `sweep_array.sbatch`: every array task a worker of one sweep folder; exactly `--max-evals` '
    'trials',
    note='(4 tasks, 8 trials, real Slurm)')
@pytest.mark.claim(
    'a trial whose worker is gone is taken over and continues from its checkpoint',
    note='(`scancel --signal=KILL`)')
def test_a_sweep_array_shares_one_folder_and_a_killed_tasks_trial_is_taken_over_from_its_checkpoint(slurm, workdir):
    """`sbatch --array=0-3` of sweep_array.sbatch, 8 trials: every task a worker of one sweep folder; a task killed
    outright mid-trial (`scancel --signal=KILL`, as a lost node) leaves its trial to another task, which continues
    it from its checkpoint."""
    max_evals, epochs = 8, 3
    array, folder = submit_held_sweep_array(slurm, workdir, 4, max_evals, epochs, seed=7)
    victim = wait_for(lambda: folder.is_dir() and held_trial(folder), 240, "a trial held after its first epoch")
    task = f"{array}_{victim['worker']['slurm_array_task']}"
    slurm.run(["scancel", "--full", "--signal=KILL", task])
    slurm.wait_for_end(task, 120)
    (workdir / "release").touch()
    ends = {index: slurm.wait_for_end(f"{array}_{index}", 400) for index in range(4)}
    logs = task_logs(workdir, array, 4)
    killed = int(victim["worker"]["slurm_array_task"])
    assert all(info["JobState"] == "COMPLETED" for index, info in ends.items() if index != killed), (ends, logs)

    rows, records = assert_finished_once_each(folder, max_evals, epochs)
    number = victim["tid"] + 1
    taken = records[number]
    assert taken["experiment"] == victim["experiment"] and taken["takeovers"] == 1, taken
    assert taken["worker"]["slurm_array_task"] != victim["worker"]["slurm_array_task"]
    attempts = read_run(victim["experiment"])["attempts"]
    assert [attempt["slurm_array_task_id"] for attempt in attempts] == [str(killed), taken["worker"]["slurm_array_task"]]
    assert re.search(r"^Resuming after epoch [12]$", Path(taken["log"]).read_text(), re.MULTILINE)  # not from scratch
    assert trial_lines(logs) == {trial: 1 for trial in range(1, max_evals + 1)}, logs  # each trained once
    assert any(f"taking over trial {number}/{max_evals} (its worker" in log for log in logs), logs
    assert all("worker done" in log for index, log in enumerate(logs) if index != killed), logs


@pytest.mark.claim(
    'a worker stopped by USR1 checkpoints and releases its trial; the requeued tasks finish the sweep, nothing '
    'trained twice')
def test_usr1_to_a_whole_sweep_array_requeues_every_task_and_no_trial_is_trained_again(slurm, workdir):
    """Trial 1 finished, two trials mid-way when every task gets USR1 (Slurm's time-limit warning): they
    checkpoint, the tasks are requeued, and back they continue those two from their checkpoints and train the last."""
    max_evals, epochs = 4, 3
    array, folder = submit_held_sweep_array(slurm, workdir, 2, max_evals, epochs, seed=3)
    first = wait_for(lambda: folder.is_dir() and len(held_trials(folder)) == 2 and held_trials(folder)[0], 240,
                     "the first two trials held after their first epoch")
    (workdir / f"release-{first['pid']}").touch()  # one of them finishes; its worker starts a third, held too
    wait_for(lambda: len(sweep_array_state(folder)[0]) == 1 and len(held_trials(folder)) == 2, 240,
             "one trial finished and two held")
    finished = {row["experiment"]: read_run(row["experiment"]) for row in sweep_array_state(folder)[0]}
    stopped = {record["tid"] + 1 for record in held_trials(folder)}
    slurm.run(["scancel", "--batch", "--signal=USR1", array])  # the array's id: every running task
    (workdir / "release").touch()
    ends = [slurm.wait_for_end(f"{array}_{index}", 400) for index in range(2)]
    logs = task_logs(workdir, array, 2)
    assert [info["JobState"] for info in ends] == ["COMPLETED"] * 2, logs
    assert [restarts(info) for info in ends] == [1, 1], logs
    assert all(f"exit code 138: requeueing array task {array}_{index}" in log for index, log in enumerate(logs))
    assert sum(log.count("stopped trial ") for log in logs) == 2, logs

    rows, records = assert_finished_once_each(folder, max_evals, epochs)
    for experiment, run in finished.items():
        assert read_run(experiment) == run, "a finished trial was trained again"
    assert {number for number, record in records.items() if record["takeovers"]} == stopped
    for number in stopped:  # continued from their checkpoints, in the same experiment
        assert len(read_run(records[number]["experiment"])["attempts"]) == 2
        assert re.search(r"^Resuming after epoch [12]$", Path(records[number]["log"]).read_text(), re.MULTILINE)
    assert trial_lines(logs) == {trial: 1 for trial in range(1, max_evals + 1)}, logs


@pytest.mark.claim('`--host` (default 127.0.0.1)', note="(`--host 0.0.0.0`: answered at the node's name)")
@pytest.mark.claim('serve template: serves a running experiment, says how to reach it')
def test_serve_job_answers_grpc_and_rest_at_the_address_it_prints_and_stops_on_scancel(slurm, workdir, trained):
    import grpc
    import requests
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from serving_helpers import predict_request

    env = slurm_job_env(slurm, EXPERIMENT=trained.dir)
    job = slurm.submit([*SMALL, template("serve.sbatch")], cwd=workdir, env=env)
    log_name = f"em-serve-{job}.out"
    line = wait_for(lambda: re.search(r"gRPC (\S+):(\d+), REST (http://\S+)", job_output(workdir, log_name)), 180,
                    "the addresses in the job's output")
    grpc_address, rest_url = f"{line[1]}:{line[2]}", line[3]
    wait_while_running(slurm, job, lambda: _answers(rest_url), 120, "model available at the printed REST address",
                       workdir / log_name)

    x = np.array([[-1.0], [0.5], [1.5]], np.float32)
    expected = trained.model(x, training=False).numpy()
    rows = requests.post(f"{rest_url}:predict", json={"instances": x.tolist()}, timeout=30).json()["predictions"]
    np.testing.assert_allclose([row["prediction"] for row in rows], expected, rtol=1e-6)
    request = predict_request(trained.model_name, {"input": x})
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(grpc_address))
    answer = stub.Predict(request, timeout=30)
    np.testing.assert_allclose(np.array(answer.outputs["prediction"].float_val).reshape(x.shape), expected, rtol=1e-6)

    slurm.run(["scancel", job])
    stuck = ""  # the server's state if it has not said it stops within 20 s (KillWait is 30 s)
    try:
        wait_for(lambda: "stopping the server" in job_output(workdir, log_name), 20, "the server's stop", 0.5)
    except AssertionError:  # reported by the assertion below, with what the server was doing
        stuck = _process_states("serve --model_dir")
    final = slurm.wait_for_end(job, 60)
    log = job_output(workdir, log_name)
    assert final["JobState"] == "CANCELLED" and restarts(final) == 0, (final, log)
    assert "stopping the server" in log and "Traceback" not in log, (final["ExitCode"], final.get("RunTime"), log,
                                                                     stuck)
    wait_for(lambda: not _answers(rest_url), 30, "the port to close")


def _process_states(needle):
    """What the processes whose command line holds `needle` are doing: signal masks (pending, blocked, caught) and
    each thread's state and kernel wait channel, from /proc (for a failure's report)."""
    report = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle not in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                continue
            folder = cmdline.parent
            status = [line for line in (folder / "status").read_text().splitlines()
                      if line.split(":")[0] in ("Name", "State", "PPid", "SigPnd", "ShdPnd", "SigBlk", "SigIgn",
                                                "SigCgt")]
            threads = [f"{task.name} {(task / 'comm').read_text().strip()} "
                       f"{(task / 'stat').read_text().rsplit(')', 1)[1].split()[0]} {(task / 'wchan').read_text()}"
                       for task in sorted((folder / "task").iterdir())]
        except OSError:
            continue
        report.append(f"pid {folder.name}: " + "; ".join(status) + "\n  threads: " + ", ".join(threads))
    return "\n".join(report) or f"no process with {needle!r} left"


def _answers(rest_url):
    import requests

    try:
        return requests.get(rest_url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.claim('the signal is forwarded to the run, then `scontrol requeue`')
@pytest.mark.claim(
    'Slurm may send the signal up to 30 s early',
    note='(`--time=2 --signal=B:USR1@60`: each run stopped before the limit, requeued until finished)')
@pytest.mark.timeout(960)
def test_the_time_limit_warning_from_slurm_itself_stops_requeues_and_resumes_until_finished(slurm, workdir):
    """No scancel here: Slurm itself sends USR1 before a 2-minute limit. `--signal=B:USR1@60` is sent at the first
    of Slurm's 30-second time checks where 60 s + 30 s reach the limit: 30-60 s into each run. Epochs paced at
    about 1 s make the training (~60 s) outlast the first run; each run checkpoints and requeues, a later one
    finishes."""
    epochs = 60
    settings = settings_variant(workdir, "paced.py", [
        "early_stopping_patience = 1000", "nb_train_samples = 200",
        "import time as _time",
        "class _Paced(tf.keras.callbacks.Callback):",
        "    def on_epoch_end(self, epoch, logs=None):",
        "        _time.sleep(1.0)",
        "def addon_callbacks(model, train_samples, val_samples):",
        "    return [_Paced()]",
    ])
    env = slurm_job_env(slurm, SETTINGS=settings, EXTRA_ARGS=f"--hparam nbEpoch={epochs}")
    job = slurm.submit([*SMALL, "--time=2", "--signal=B:USR1@60", template("train.sbatch")], cwd=workdir, env=env)
    # each run trains from its start (TensorFlow's import) to the signal, 30-60 s in: 9-15 epochs on a quiet
    # machine, 4-8 under the suite's load (e8f7f73's CI: 7 runs, 60 epochs not done in 420 s); ~1 min a run
    final = slurm.wait_for_end(job, 900)
    log = job_output(workdir, f"em-train-{job}.out")
    assert final["JobState"] == "COMPLETED" and restarts(final) >= 1, (final, log)
    assert "received SIGUSR1: checkpointed after" in log and f"exit code 138: requeueing job {job}" in log, log
    assert "DUE TO TIME LIMIT" not in log, log  # every run stopped before the limit
    root = single_experiment(workdir / WORKING_FOLDER)
    info = read_run(root)
    assert info["status"] == "finished" and info["epochs_completed"] == epochs, info
    assert history_epochs(root) == list(range(1, epochs + 1))
