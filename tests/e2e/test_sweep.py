"""`experiments-manager sweep`: hyperopt trials as real experiments, each in its own process."""

import csv
import json
import math
import pickle
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import (HELD_AT_THE_SECOND_EPOCH, RAN_AS, REGRESSION_SETTINGS, cli_env, read_run,
                      require_real_part, run_command, settings_variant, start_forked, wait_for)

WORKING_FOLDER = Path("experiments/examples/curve_fitting")
QUICK = ("--hparam", "nbEpoch=2")


def sweep_folder(workdir):
    (folder,) = (workdir / WORKING_FOLDER).glob("*_sweep_*")
    return folder


def experiment_folders(workdir):
    """Every experiment of the working folder: the trials' are in their sweep's folder."""
    return sorted(path.parent for path in (workdir / WORKING_FOLDER).glob("*_sweep_*/*/run.json"))


def results(folder):
    with open(folder / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def hparams_logged(experiment):
    """The HParams session TensorBoard shows for one experiment: {name: value}."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2

    for events in (experiment / "logs").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "hparams":
                    continue
                data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                if data.HasField("session_start_info"):
                    return {name: getattr(v, v.WhichOneof("kind")) for name, v in data.session_start_info.hparams.items()}
    return None


@pytest.mark.slow
@pytest.mark.claim(
    'the same settings file trains from Kafka, federated, or as a sweep whose trials are ordinary experiments')
@pytest.mark.claim("a sweep's trials listed as `<sweep>/<experiment>`")
@pytest.mark.claim('`hyperopt_space` in the settings; whole numbers reach the trial as ints')
@pytest.mark.claim('every trial is an experiment in its own folder inside the sweep folder')
@pytest.mark.claim('sampled hparams are overrides on top of the fixed `--hparam` ones')
@pytest.mark.claim('trials are scored by their best `monitored_loss_name` value from run.json')
@pytest.mark.claim(
    '`sweep.json` (what was swept, status, best trial)',
    note='(status and best; "what was swept" not asserted)')
@pytest.mark.claim('`results.csv`: hparams, status, best value and epoch, experiment, reason')
@pytest.mark.claim('`loss_vs_hparams.png`', note='(weak: PNG signature only)')
@pytest.mark.claim("`trials.pickle` loads back as hyperopt's `Trials`")
@pytest.mark.claim("at the end: the best trial's folder and its `serve --model_dir` line")
@pytest.mark.claim('`list <workingFolder>` lists trials as `<sweep>/<experiment>`')
@pytest.mark.claim('`--workers N`: N trials at once in one process, each trained once', note='(2 workers, 3 trials)')
@pytest.mark.claim('each worker trains its trials in one warm process (TensorFlow imported once per worker, not once '
                   'per trial)', note="(each trial's attempt recorded by one of the two workers' host pids)")
@pytest.mark.claim(
    '`examples/regression` (original style, served module, Client_IO, hyperopt_space) trains, serves, sweeps')
def test_sweep_trains_every_trial_as_an_experiment(run_cli, workdir):
    """Two workers in one process (`--workers 2`): two trials at once, each trained once, each worker's trials in
    its one warm trial host (TensorFlow imported once per worker, not once per trial)."""
    result = run_cli("sweep", "-u", REGRESSION_SETTINGS, "--max-evals", "3", "--seed", "7", "--workers", "2", *QUICK,
                     timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = re.findall(r"^trial (\d)/3 val_loss=.*\[worker (\d)\]$", result.stderr, re.MULTILINE)
    assert sorted(number for number, _ in lines) == ["1", "2", "3"], result.stderr
    assert {worker for _, worker in lines} == {"1", "2"}, "both workers trained"
    assert "trained here:      3 trials by 2 workers" in result.stdout
    # TPE's random start-up sized to the sweep (3 trials, 2 workers: 4, all random), said in the first line
    first_line = r"^Sweep folder: \S+ \(new; 3 trials, tpe \(its first 4 trials at random\), seed 7, 2 workers here\)$"
    assert re.search(first_line, result.stderr, re.MULTILINE), result.stderr
    folder = sweep_folder(workdir)
    rows = results(folder)
    experiments = experiment_folders(workdir)
    assert len(rows) == 3 and len(experiments) == 3
    assert sorted(row["experiment"] for row in rows) == sorted(str(path) for path in experiments)
    for row in rows:
        run = read_run(row["experiment"])
        assert row["status"] == "finished" and run["status"] == "finished"
        assert float(row["best_val_loss"]) == run["best_value"]
        assert int(row["best_epoch"]) == run["best_epoch"]
        # the sampled hparams reached the trial, whole numbers as ints, the fixed override too
        assert run["hparams"]["hiddenNeurons"] == int(row["hiddenNeurons"])
        assert isinstance(run["hparams"]["hiddenNeurons"], int)
        assert run["hparams"]["learningRate"] == float(row["learningRate"])
        assert run["hparams"]["nbEpoch"] == 2 and run["epochs_completed"] == 2
        assert hparams_logged(Path(row["experiment"]))["learningRate"] == pytest.approx(float(row["learningRate"]))
    assert len({row["learningRate"] for row in rows}) == 3, "each trial samples its own point"
    hosts = {read_run(row["experiment"])["attempts"][0]["pid"] for row in rows}
    print("trial hosts' pids:", hosts)
    assert len(hosts) == 2, "one warm host per worker: its trials in one process"

    best = min((read_run(path) for path in experiments), key=lambda run: run["best_value"])
    best_folder = next(path for path in experiments if read_run(path) == best)
    assert f"serve it:          {RAN_AS} serve --model_dir {best_folder}" in result.stdout
    spec = json.loads((folder / "sweep.json").read_text())
    assert spec["status"] == "finished" and spec["best"]["experiment"] == str(best_folder)
    assert spec["startup_trials"] == 4
    assert spec["best"]["best_value"] == best["best_value"]
    assert (folder / "loss_vs_hparams.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(folder / "trials.pickle", "rb") as handle:
        trials = pickle.load(handle)
    assert min(trials.losses()) == best["best_value"]
    listing = run_cli("list", str(WORKING_FOLDER))
    assert re.search(rf"^{folder.name}\s+finished\s+3/3\s+val_loss=", listing.stdout, re.MULTILINE), listing.stdout
    # the trials are in the sweep folder (tensorboard --logdir <sweep> compares them), and listed from there
    assert not list((workdir / WORKING_FOLDER).glob("*/run.json"))
    for experiment in experiments:
        row = re.escape(f"{folder.name}/{experiment.name}")
        assert re.search(rf"^{row}\s+finished\s+2/2", listing.stdout, re.MULTILINE), listing.stdout


@pytest.mark.slow
@pytest.mark.claim('everything is rewritten after every trial', note='(results.csv has 2 rows while the sweep runs)')
@pytest.mark.claim('a sweep killed outright: its trials notice and checkpoint')
@pytest.mark.claim('`sweep --resume` trains only what is missing; a stopped trial continues its own experiment')
def test_a_killed_sweep_resumes_with_only_the_missing_trials(workdir, tmp_path):
    """The second trial is held before its second epoch (`hold`) while the sweep is killed, and released once it
    noticed: it stops mid-training however fast its epochs are."""
    settings = settings_variant(workdir, "held.py", HELD_AT_THE_SECOND_EPOCH)
    log = open(tmp_path / "sweep.log", "w")
    sweep = start_forked(["sweep", "-u", str(settings), "--max-evals", "3", "--seed", "3", "--hparam", "nbEpoch=6"],
                         cwd=workdir, stdout=log, stderr=subprocess.STDOUT)  # its trial hosts forked too
    try:
        folder = wait_for(lambda: next((workdir / WORKING_FOLDER).glob("*_sweep_*"), None), 120, "the sweep folder")
        wait_for(lambda: (folder / "results.csv").is_file() and len(results(folder)) == 1, 300, "one trial done")
        (workdir / "hold").touch()  # the second trial, still starting, will wait before its second epoch

        def second_trial_trained_an_epoch():
            running = [path for path in experiment_folders(workdir) if read_run(path)["status"] == "running"]
            return running and read_run(running[0])["epochs_completed"] >= 1 and running[0]

        second = wait_for(second_trial_trained_an_epoch, 120, "the second trial's first epoch")
    finally:
        sweep.kill()  # SIGKILL: no chance to clean up, as when a node dies
        sweep.wait()
    done_before = {row["experiment"]: read_run(row["experiment"]) for row in results(folder)}
    # the orphaned trial notices, checkpoints and stops by itself
    wait_for(lambda: "is gone: stopping" in (second / "train.log").read_text(), 60, "the orphaned trial to notice")
    (workdir / "release").touch()
    wait_for(lambda: read_run(second)["status"] == "interrupted", 60, "the orphaned trial to checkpoint")

    resumed = run_command(["sweep", "--resume", str(folder)], cwd=workdir, env=cli_env(),
                          capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    rows = results(folder)
    assert len(rows) == 3 and [row["status"] for row in rows] == ["finished"] * 3
    assert len(experiment_folders(workdir)) == 3, "the interrupted trial continued in its own folder"
    for experiment, run in done_before.items():
        assert read_run(experiment) == run, "a finished trial was trained again"
    second_run = read_run(second)
    assert second_run["status"] == "finished" and second_run["epochs_completed"] == 6
    assert "resumed_by" in second_run
    assert str(second) in {row["experiment"] for row in rows}
    assert re.findall(r"^trial (\d)/3 ", resumed.stderr, re.MULTILINE) == ["2", "3"]
    assert "status:            finished" in resumed.stdout


@pytest.mark.slow
@pytest.mark.claim('SIGTERM stops a sweep: running trial checkpointed, exit 128 + signal')
def test_sigterm_stops_a_sweep_with_its_running_trial_checkpointed(workdir, tmp_path):
    """What Slurm does before a time limit or preemption (`--signal=TERM@120`)."""
    with open(tmp_path / "sweep.out", "w") as out:
        sweep = start_forked(["sweep", "-u", REGRESSION_SETTINGS, "--max-evals", "3", "--hparam", "nbEpoch=50"],
                             cwd=workdir, stdout=out, stderr=subprocess.PIPE, text=True)
        try:
            experiment = wait_for(lambda: next((path for path in experiment_folders(workdir)
                                                if read_run(path)["epochs_completed"] >= 1), None),
                                  120, "the first trial's first epoch")
            sweep.send_signal(signal.SIGTERM)
            _, stderr = sweep.communicate(timeout=60)
        finally:
            sweep.kill()
    assert sweep.returncode == 128 + signal.SIGTERM, stderr
    output = (tmp_path / "sweep.out").read_text()
    folder = sweep_folder(workdir)
    assert "status:            interrupted (0 of 3 trials done)" in output
    assert f"resume with:       {RAN_AS} sweep --resume {WORKING_FOLDER / folder.name}" in output
    run = read_run(experiment)
    assert run["status"] == "interrupted" and 1 <= run["epochs_completed"] < 50
    assert any((experiment / "checkpoints").iterdir())
    assert json.loads((folder / "sweep.json").read_text())["status"] == "interrupted"
    assert len(experiment_folders(workdir)) == 1


@pytest.mark.slow
@pytest.mark.claim('`--seed S`', note='(seed 4 gives the expected points)')
@pytest.mark.claim('a trial that raises or gets a NaN loss is recorded `failed` with its reason; the sweep goes on')
@pytest.mark.claim('`results.csv`: hparams, status, best value and epoch, experiment, reason')
def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(run_cli, workdir):
    settings = settings_variant(workdir, "failing_trials.py", [
        "def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):",
        "    if hparams['hiddenNeurons'] > 44:",
        "        raise RuntimeError('no data for wide models')",
        "    x = np.linspace(-2, 2, 200, dtype=np.float32).reshape(-1, 1)",
        "    return tf.data.Dataset.from_tensor_slices((x, x**2)).batch(50)",
        "def get_total_loss(model):",
        "    if hparams['hiddenNeurons'] < 20:",
        "        return lambda y_true, y_pred: tf.reduce_mean(y_pred) * float('nan')",
        "    return 'mean_squared_error'",
    ])
    # seed 4 samples hiddenNeurons 48 (raises), 36 (trains), 8 (NaN loss)
    result = run_cli("sweep", "-u", str(settings), "--max-evals", "3", "--seed", "4", *QUICK, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {int(row["hiddenNeurons"]): row for row in results(sweep_folder(workdir))}
    assert sorted(rows) == [8, 36, 48]
    assert rows[36]["status"] == "finished" and math.isfinite(float(rows[36]["best_val_loss"]))
    assert rows[48]["status"] == "failed" and "RuntimeError: no data for wide models" in rows[48]["reason"]
    assert rows[8]["status"] == "failed" and "NaN" in rows[8]["reason"]
    # the dry build names the settings function that raised, before the trial's experiment folder exists
    assert re.search(r"trial 1/3 failed: failing_trials\.py: get_input_pipeline \(line \d+\): raised RuntimeError: "
                     r"no data for wide models", result.stderr), result.stderr[-2000:]
    assert f"best experiment:   {rows[36]['experiment']}" in result.stdout


@pytest.mark.slow
def test_a_trial_the_machine_fails_is_tried_again_later_not_in_a_loop_nor_recorded_failed(run_cli, workdir):
    """A trial process that meets a full disk exits 75: its worker releases it and stops (exit 75, for a job to be
    requeued), instead of taking it back at once for ever; the trial is `interrupted`, not `failed`."""
    settings = settings_variant(workdir, "full_disk.py", [
        "import errno, sys",
        "if sys.argv[0].endswith('trial_host.py'):  # the trials only, not the sweep's own load",
        "    raise OSError(errno.ENOSPC, 'No space left on device', 'experiments/data.npy')",
    ])
    result = run_cli("sweep", "-u", str(settings), "--max-evals", "2", "--seed", "1", *QUICK, timeout=300)
    assert result.returncode == 75, result.stdout + result.stderr
    assert re.search(r"^trial 1/2 must be tried again later \(experiments/data.npy: No space left on device.*\): "
                     r"released; this worker stops$", result.stderr, re.MULTILINE), result.stderr
    folder = sweep_folder(workdir)
    (record,) = [json.loads(path.read_text()) for path in (folder / "trials").glob("trial-*.json")]
    assert record["status"] == "interrupted" and record["exit_code"] == 75 and record["takeovers"] == 0
    assert Path(record["log"]).read_text().count("No space left on device") == 1, "tried once"
    spec = json.loads((folder / "sweep.json").read_text())
    assert spec["status"] == "interrupted" and spec["exit_code"] == 75 and spec["trials_done"] == 0
    assert "status:            interrupted (0 of 2 trials done)" in result.stdout
    assert f"resume with:       {RAN_AS} sweep --resume {folder.relative_to(workdir)}" in result.stdout


@pytest.mark.slow
@pytest.mark.claim('run.json: times', note='(weak: reads `started` / `ended` to find overlap)')
@pytest.mark.claim(
    '`--parallelism P` starts P workers of the sweep as Spark tasks (`local[P]`): trials at once, through the sweep '
    'folder', note='(skipped without Java unless CI requires it)')
@pytest.mark.claim('a stop signal to a Spark sweep stops its workers as signalled workers stop; `--resume` continues '
                   'it with Spark or without')
def test_parallel_sweep_runs_trials_at_once_on_spark_and_a_stopped_one_resumes_without_spark(start_cli, run_cli,
                                                                                            workdir):
    """Both Spark tasks' workers hold a trial before its second epoch (`hold`) when the sweep is stopped: one engine,
    so the workers stop and record as any signalled workers do, and local workers finish the same sweep."""
    require_real_part(None if shutil.which("java") else
                      "Spark needs Java, which is not installed on this machine (apt-get install openjdk-17-jre-headless)")
    settings = settings_variant(workdir, "held.py", HELD_AT_THE_SECOND_EPOCH)
    (workdir / "hold").touch()
    driver = start_cli("sweep", "-u", str(settings), "--max-evals", "3", "--parallelism", "2", "--seed", "5",
                       "--hparam", "nbEpoch=3", own_group=True)
    folder = wait_for(lambda: next((workdir / WORKING_FOLDER).glob("*_sweep_*"), None), 120, "the sweep folder")

    def two_trials_held():
        held = [path for path in folder.glob("*/run.json") if json.loads(path.read_text()).get("epochs_completed")]
        return len(held) == 2 and held

    held = [path.parent for path in wait_for(two_trials_held, 300, "two trials at once, each past its first epoch")]
    lines = []  # the driver's output, with its workers' (their Spark tasks' output is the driver's)
    reader = threading.Thread(target=lambda: lines.extend(iter(driver.stdout.readline, "")), daemon=True)
    reader.start()
    driver.send_signal(signal.SIGTERM)
    wait_for(lambda: sum("stopping this worker's running trials" in line for line in lines) == 2, 60,
             "both workers to pass the stop on to their trials")
    (workdir / "release").touch()  # the held trials go on: at their next step they checkpoint and stop
    driver.wait(timeout=180)
    reader.join(timeout=10)
    output = "".join(lines)
    assert driver.returncode == 143, output
    assert "workers:           2 Spark tasks, one worker process each (exit codes 143, 143)" in output, output
    spec = json.loads((folder / "sweep.json").read_text())
    assert (spec["status"], spec["exit_code"], spec["parallelism"]) == ("interrupted", 143, 2), spec
    records = [json.loads(path.read_text()) for path in sorted((folder / "trials").glob("trial-*.json"))]
    assert [record["status"] for record in records] == ["interrupted", "interrupted"], records
    assert len({record["worker"]["pid"] for record in records}) == 2, records  # one per Spark task
    assert all(read_run(experiment)["status"] == "interrupted" for experiment in held)
    wait_for(lambda: subprocess.run(["pgrep", "-f", str(folder)], capture_output=True).returncode == 1, 60,
             "no process of the sweep left")

    (workdir / "hold").unlink()
    (workdir / "release").unlink()
    resumed = run_cli("sweep", "--resume", str(folder), "--workers", "2", timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    said = resumed.stdout + resumed.stderr
    assert said.count("it continues its experiment from its last checkpoint") == 2, said
    rows = results(folder)
    assert len(rows) == 3 and all(row["status"] == "finished" for row in rows)
    assert len(experiment_folders(workdir)) == 3
    for experiment in held:  # continued in place from their checkpoints
        run = read_run(experiment)
        assert run["status"] == "finished" and run["epochs_completed"] == 3 and len(run["attempts"]) == 2, run
    spans = sorted((read_run(row["experiment"])["started"], read_run(row["experiment"])["ended"]) for row in rows)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), f"no two trials overlapped: {spans}"


@pytest.mark.slow
@pytest.mark.parametrize("extra_lines, arguments, message, through", [
    (["hyperopt_space = None"], (), "mysettings_sweep.py: hyperopt_space: missing (a sweep needs a dict", "process"),
    (["hyperopt_space = {'learningRate': 0.01}"], (),
     "mysettings_sweep.py: hyperopt_space['learningRate']: expected a hyperopt expression such as "
     "hp.uniform('learningRate', 0, 1), got 0.01", "main"),
    (["hyperopt_space = {'lr': hp.loguniform('lr', -7, -2)}"], (),
     "mysettings_sweep.py: hyperopt_space['lr']: expected a key of hparams ('hiddenNeurons', 'learningRate', "
     "'nbEpoch', 'addNoise', 'noiseStd'), got 'lr'; did you mean 'learningRate'?", "main"),
    ([], ("--hparam", "learningRate=0.1"),
     "--hparam learningRate: also in mysettings_sweep.py's hyperopt_space (a swept hparam cannot be fixed; drop one)",
     "main"),
])
@pytest.mark.claim('a bad `hyperopt_space` or a fixed swept hparam is one error line, no folder')
@pytest.mark.claim('a `hyperopt_space` key that is no hparam is refused before the sweep', note="(the `'lr'` case)")
def test_a_bad_sweep_is_one_error_line_and_no_folder(run_cli, workdir, monkeypatch, capsys, extra_lines, arguments,
                                                      message, through):
    """Through the `experiments-manager` process, or (the same code, without a process importing TensorFlow again)
    the CLI's `main` in this one."""
    settings = settings_variant(workdir, "mysettings_sweep.py", extra_lines)
    command = ["sweep", "-u", str(settings), "--max-evals", "2", *arguments]
    if through == "process":
        result = run_cli(*command)
        returncode, stderr = result.returncode, result.stderr
    else:
        from experiments_manager.cli import main

        monkeypatch.chdir(workdir)
        returncode, stderr = main(command), capsys.readouterr().err
    assert returncode == 2
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), stderr
    assert not (workdir / WORKING_FOLDER).exists() or not list((workdir / WORKING_FOLDER).iterdir())


def test_a_process_that_joins_a_sweep_with_other_options_is_one_error_line_and_writes_nothing(workdir, monkeypatch,
                                                                                               capsys):
    """`--join NAME` of an existing sweep: the options a process gives must agree (those left out are the sweep's);
    `--max-evals` is needed to start one, not to join it."""
    from experiments_manager.cli import main

    monkeypatch.chdir(workdir)
    folder = workdir / WORKING_FOLDER / "my_test_sweep_job7"
    folder.mkdir(parents=True)
    spec = {"settings_file": str((workdir / REGRESSION_SETTINGS).resolve()), "fixed_hparams": {"nbEpoch": 2},
            "algo": "tpe", "seed": 3, "max_evals": 4, "parallelism": 1, "status": "running", "space": {}}
    (folder / "sweep.json").write_text(json.dumps(spec))
    before = sorted(path.name for path in folder.iterdir())

    def refused(*arguments):
        code = main(["sweep", "-u", REGRESSION_SETTINGS, *arguments])
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
        assert code == 2 and len(errors) == 1, errors
        assert sorted(path.name for path in folder.iterdir()) == before
        return errors[0]

    line = refused("--join", "job7", "--hparam", "nbEpoch=5")
    assert line == (f"error: --join job7: {Path(WORKING_FOLDER) / 'my_test_sweep_job7'}: --hparam: the sweep fixes "
                    "nbEpoch=2, this process nbEpoch=5 (leave the option out to take the sweep's)")
    assert "--seed: the sweep has 3, this process 4" in refused("--join", "job7", "--seed", "4")
    assert refused("--join", "job8") == ("error: --max-evals: required to start the sweep job8 (the number of "
                                         "trials; a process that joins an existing sweep may leave it out)")
    assert refused("--join", "job7", "--spark-master", "local[2]").startswith("error: --spark-master: only with "
                                                                              "--parallelism P > 1")
    assert refused("--join", "a/b", "--max-evals", "2").startswith("error: --join: expected a plain name")
    assert sorted(path.name for path in (workdir / WORKING_FOLDER).iterdir()) == ["my_test_sweep_job7"]


@pytest.mark.claim('`hyperopt_space` in the settings; whole numbers reach the trial as ints')
def test_search_space_passes_whole_numbers_as_ints():
    from hyperopt import hp

    from experiments_manager.sweeps.space import SearchSpace

    space = SearchSpace({"units": hp.quniform("units", 4, 64, 4), "rate": hp.quniform("rate", 0, 1, 0.25),
                         "depth": hp.uniformint("depth", 1, 5), "scale": hp.choice("scale", [0.5, 1.0]),
                         "steps": hp.uniform("steps", 1, 9)},
                        defaults={"steps": 3}, file_name="s.py")
    hparams = space.hparams_for({"units": 32.0, "rate": 1.0, "depth": 2, "scale": 1.0, "steps": 4.0})
    assert hparams == {"units": 32, "rate": 1.0, "depth": 2, "scale": 1.0, "steps": 4}
    assert [type(hparams[name]) for name in ("units", "rate", "depth", "scale", "steps")] == [int, float, int, float,
                                                                                               int]
