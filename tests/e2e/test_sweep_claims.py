"""`experiments-manager sweep`: the docs' claims (docs/how-to/sweeps.md) about maximised metrics, seeds, killed
trials, the trials' records and train commands, stop signals, `--resume --max-evals`, `--requeue-file`, and `--algo
rand|anneal`.

Real sweeps of tiny trials (1-2 epochs of a few hundred samples); every seed is fixed and printed.
"""

import ast
import csv
import json
import os
import pickle
import re
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import RAN_AS, cli_command, cli_env, hparams_statuses, read_run, run_command, settings_variant, wait_for

BAND_MODEL = '''"""Two classes of x: inside the band |x| < 1 or outside it (logits)."""

import tensorflow as tf


def model(usersettings):
    hidden = usersettings.hparams['hiddenNeurons']
    inputs = tf.keras.Input(shape=(1,), name='input')
    h = tf.keras.layers.Dense(hidden, activation='relu')(inputs)
    logits = tf.keras.layers.Dense(2, name='prediction')(h)
    return tf.keras.Model(inputs, logits, name='band_classifier')
'''

# the regression example turned into a small classification task monitoring val_accuracy (Keras' 'accuracy')
BAND_LINES = [
    "workingFolder = 'experiments/band'",
    "model_file = 'examples/regression/model_band_classifier.py'",
    "monitored_loss_name = 'val_accuracy'",
    "nb_train_samples = 400",
    "nb_val_samples = 200",
    "hyperopt_space = {'learningRate': hp.loguniform('learningRate', -7, -1)}",
    "def get_total_loss(model):",
    "    return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)",
    "def get_metrics(model, loss):",
    "    return ['accuracy']",
    "def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):",
    "    rng = np.random.default_rng(0 if isTraining else 1)",
    "    x = rng.uniform(-2, 2, size=(nb_train_samples if isTraining else nb_val_samples, 1)).astype(np.float32)",
    "    labels = (np.abs(x[:, 0]) < 1).astype(np.int32)",
    "    return tf.data.Dataset.from_tensor_slices((x, labels)).batch(batch_size)",
]


def results(folder):
    with open(Path(folder) / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def sweep_folders(workdir, working_folder):
    return sorted((workdir / working_folder).glob("*_sweep_*"))


def trial_experiments(sweep):
    return sorted(path.parent for path in Path(sweep).glob("*/run.json"))


def trial_records(sweep):
    """trials/<key>.json of every trial: {record path: its content}."""
    return {path: json.loads(path.read_text()) for path in sorted((Path(sweep) / "trials").glob("*.json"))}


def train_command_hparams(command):
    """The --hparam overrides of an `experiments-manager train` argv, as Python values."""
    pairs = [command[index + 1] for index, word in enumerate(command) if word == "--hparam"]
    return {name: ast.literal_eval(value) for name, value in (pair.split("=", 1) for pair in pairs)}


def suggestion(settings_path, algo, seed, earlier=()):
    """The hparams a sweep's next trial gets with this algo and seed after the `earlier` trials (hyperopt trial
    documents, finished), computed by hyperopt without training anything."""
    from hyperopt import Trials
    from hyperopt.base import Domain

    from experiments_manager.settings import load_settings
    from experiments_manager.sweeps.space import SearchSpace
    from experiments_manager.sweeps.sampler import SeededSuggestions

    space = SearchSpace.from_settings(load_settings(str(settings_path)))
    trials = Trials()
    trials.insert_trial_docs(list(earlier))
    trials.refresh()
    domain = Domain(lambda sample: 0.0, space.expressions)
    (doc,) = SeededSuggestions(algo, seed)([len(earlier)], domain, trials, 0)
    return space.hparams_for({name: values[0] for name, values in doc["misc"]["vals"].items()})


@pytest.mark.slow
@pytest.mark.claim('... `val_accuracy` in particular')
@pytest.mark.claim('`--algo tpe\\|rand\\|anneal`', note='(anneal: its second point)')
@pytest.mark.claim(
    "each trial's run.json holds the `train` command that reproduces it",
    note='(runs it: same hparams and best value)')
def test_a_val_accuracy_sweep_picks_the_highest_and_a_trials_train_command_reproduces_it(run_cli, workdir):
    """`--algo anneal`; a maximised metric (val_accuracy) reported as is; run.json's `train` command reproduces."""
    (workdir / "examples/regression/model_band_classifier.py").write_text(BAND_MODEL)
    settings = settings_variant(workdir, "band.py", BAND_LINES)
    seed = 3  # samples learningRate 0.0030 (val_accuracy ~0.49), then 0.0060 (~0.57): the best is not the first
    print("sweep seed:", seed)
    result = run_cli("sweep", "-u", str(settings), "--max-evals", "2", "--algo", "anneal", "--seed", str(seed),
                     "--hparam", "nbEpoch=2", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep,) = sweep_folders(workdir, "experiments/band")
    spec = json.loads((sweep / "sweep.json").read_text())
    assert spec["algo"] == "anneal" and spec["seed"] == seed
    rows = results(sweep)
    assert [row["status"] for row in rows] == ["finished", "finished"]
    with open(sweep / "trials.pickle", "rb") as handle:
        saved = pickle.load(handle)
    # anneal's second point follows from the first trial's result, where tpe's (random start-up) does not
    second = {"learningRate": float(rows[1]["learningRate"])}
    assert second == suggestion(settings, "anneal", seed, saved.trials[:1])
    assert second != suggestion(settings, "tpe", seed, saved.trials[:1])
    values = [float(row["best_val_accuracy"]) for row in rows]
    print("trials' best val_accuracy:", values)
    assert len(set(values)) == 2, "the trials must differ for the direction to show"
    for row, value in zip(rows, values):
        run = read_run(row["experiment"])
        assert run["monitor_mode"] == "max" and run["best_value"] == value  # as recorded, not negated
        assert 0 < value <= 1
    best_index = values.index(max(values))
    assert spec["best"]["best_value"] == max(values) and spec["best"]["trial"] == best_index + 1
    assert spec["best"]["experiment"] == rows[best_index]["experiment"]
    assert f"best val_accuracy: {max(values):.6g} (trial {best_index + 1}" in result.stdout
    assert f"serve it:          {RAN_AS} serve --model_dir {rows[best_index]['experiment']}" in result.stdout
    assert sorted(saved.losses()) == sorted(-value for value in values)  # hyperopt minimised -val_accuracy

    # each trial's run.json holds the train command that reproduces it: the settings, the fixed and sampled hparams
    for row in rows:
        command = read_run(row["experiment"])["command"]
        assert command[:4] == ["experiments-manager", "train", "-u", str((workdir / settings).resolve())], command
        assert train_command_hparams(command) == {"nbEpoch": 2, "learningRate": float(row["learningRate"])}
    best_run = read_run(rows[best_index]["experiment"])
    again = run_cli(*best_run["command"][1:], timeout=200)
    assert again.returncode == 0, again.stdout + again.stderr
    (alone,) = (workdir / "experiments/band").glob("*/run.json")  # a plain experiment, beside the sweep folder
    alone = json.loads(alone.read_text())
    assert alone["hparams"] == best_run["hparams"] and "sweep" not in alone
    print("best val_accuracy in the sweep / trained alone:", best_run["best_value"], alone["best_value"])
    assert alone["best_value"] == pytest.approx(best_run["best_value"], abs=0.02)  # seeded: the same training


# the regression example, smaller; each trial holds before its second epoch (its first recorded and checkpointed)
# until the file `release` exists, so the test can kill it mid-training without racing it
HOLD_LINES = [
    "nb_train_samples = 400",
    "nb_val_samples = 100",
    "import os, time",
    "def addon_callbacks(model, train_samples, val_samples):",
    "    def hold(epoch, logs):",
    "        deadline = time.monotonic() + 120",
    "        while epoch == 1 and not os.path.exists('release') and time.monotonic() < deadline:",
    "            time.sleep(0.05)",
    "    return [tf.keras.callbacks.LambdaCallback(on_epoch_begin=hold)]",
]


@pytest.mark.slow
@pytest.mark.claim('`--algo tpe\\|rand\\|anneal`', note="(rand; not told apart from tpe's random start-up)")
@pytest.mark.claim('a trial that is killed is recorded `failed`')
@pytest.mark.claim('a trial that crashes its worker\'s process ends only itself: the next trial gets a new process',
                   note='(SIGKILL of the trial\'s process, its worker\'s warm host)')
@pytest.mark.claim('`results.csv`: seconds and log columns')
@pytest.mark.claim("`trials/` holds each trial's record and output log")
@pytest.mark.claim('`--max-evals` on resume raises the total')
@pytest.mark.claim('... for a sweep folder', note='(the rerun finds nothing left to train)')
def test_a_killed_trial_is_recorded_failed_and_a_resume_with_more_evals_trains_only_the_extra_trial(workdir,
                                                                                                    tmp_path):
    """`--algo rand`; a SIGKILLed trial is `failed` and the sweep goes on; results.csv's seconds and log columns and
    trials/; `--requeue-file` names the sweep folder and a rerun resumes it; `--resume --max-evals` raises the total."""
    settings = settings_variant(workdir, "hold.py", HOLD_LINES)
    requeue_file = tmp_path / "requeue" / "job-1"
    seed = 5
    print("sweep seed:", seed)
    command = cli_command("sweep", "-u", str(settings), "--max-evals", "2", "--algo", "rand", "--seed", str(seed),
                          "--hparam", "nbEpoch=2", "--requeue-file", str(requeue_file))
    working_folder = "experiments/examples/curve_fitting"
    with open(tmp_path / "sweep.log", "w") as log:
        sweep_process = subprocess.Popen(command, cwd=workdir, env=cli_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        def trial_holding_after_its_first_epoch():
            for sweep in sweep_folders(workdir, working_folder):
                for record in trial_records(sweep).values():
                    experiment = record.get("experiment")
                    if experiment and (Path(experiment) / "run.json").is_file() and \
                            read_run(experiment)["epochs_completed"] >= 1:
                        return record
            return None

        killed = wait_for(trial_holding_after_its_first_epoch, 120, "the first trial's first epoch")
        os.kill(killed["pid"], signal.SIGKILL)  # as the kernel's OOM killer would
        (workdir / "release").touch()
        sweep_process.wait(timeout=200)
    finally:
        (workdir / "release").touch()  # a held trial left by a failure ends at once
        if sweep_process.poll() is None:
            sweep_process.kill()
            sweep_process.wait()
    output = (tmp_path / "sweep.log").read_text()
    assert sweep_process.returncode == 0, output
    (sweep,) = sweep_folders(workdir, working_folder)
    assert requeue_file.read_text().strip() == str(sweep.resolve())  # the first run wrote its sweep folder

    rows = results(sweep)
    assert [row["status"] for row in rows] == ["failed", "finished"], rows
    assert rows[0]["experiment"] == killed["experiment"]
    assert rows[0]["reason"].startswith("killed by SIGKILL"), rows[0]
    assert re.search(r"^trial 1/2 failed: killed by SIGKILL", output, re.MULTILINE), output
    assert "status:            finished" in output and "trials:            2 (1 finished, 1 failed)" in output
    assert json.loads((sweep / "sweep.json").read_text())["best"]["trial"] == 2
    killed_run = read_run(killed["experiment"])  # the experiment says so too (list, TensorBoard), not `running`
    assert killed_run["status"] == "failed" and killed_run["error"] == rows[0]["reason"], killed_run
    assert hparams_statuses(Path(killed["experiment"]) / "logs") == ["STATUS_FAILURE"]
    assert {"learningRate": float(rows[0]["learningRate"]), "hiddenNeurons": int(rows[0]["hiddenNeurons"])} == \
        suggestion(settings, "rand", seed)

    # results.csv's seconds and log columns; trials/ holds each trial's record and output log
    records = trial_records(sweep)
    assert len(records) == 2 and len(list((sweep / "trials").glob("*.log"))) == 2
    by_experiment = {record["experiment"]: (path, record) for path, record in records.items()}
    for row in rows:
        assert float(row["seconds"]) > 0
        path, record = by_experiment[row["experiment"]]
        assert row["log"] == record["log"] == str(path.with_suffix(".log"))
        assert f"Experiment folder: {row['experiment']}" in Path(row["log"]).read_text()
        assert record["status"] == row["status"] and record["seconds"] == float(row["seconds"])
        assert record["hparams"] == {"learningRate": float(row["learningRate"]),
                                     "hiddenNeurons": int(row["hiddenNeurons"])}
    assert "val_loss: " in Path(rows[1]["log"]).read_text()  # the finished trial's epochs are in its log
    finished_run = read_run(rows[1]["experiment"])
    assert finished_run["status"] == "finished"
    # the killed trial's process was its worker's warm host: the next trial got a new one
    assert finished_run["attempts"][0]["pid"] != killed["pid"] and killed_run["attempts"][0]["pid"] == killed["pid"]

    # the requeued job (the same command line) resumes the sweep: no new sweep, nothing trained again
    requeued = subprocess.run(command, cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=200)
    assert requeued.returncode == 0, requeued.stdout + requeued.stderr
    assert f"{requeue_file} names {sweep.resolve()}: resuming it" in requeued.stderr
    assert sweep_folders(workdir, working_folder) == [sweep] and len(trial_experiments(sweep)) == 2
    assert not re.search(r"^trial \d", requeued.stderr, re.MULTILINE), requeued.stderr
    assert "status:            finished" in requeued.stdout

    # --resume with a larger --max-evals trains the one extra trial only
    resumed = run_command(["sweep", "--resume", str(sweep), "--max-evals", "3"], cwd=workdir,
                          env=cli_env(), capture_output=True, text=True, timeout=200)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert re.findall(r"^trial (\d)/3 ", resumed.stderr, re.MULTILINE) == ["3"], resumed.stderr
    new_rows = results(sweep)
    assert [row["status"] for row in new_rows] == ["failed", "finished", "finished"]
    assert new_rows[:2] == rows  # the killed trial is not retried, the finished one not trained again
    assert read_run(rows[1]["experiment"]) == finished_run
    assert len(trial_experiments(sweep)) == 3 and len(trial_records(sweep)) == 3
    spec = json.loads((sweep / "sweep.json").read_text())
    assert spec["max_evals"] == 3 and spec["trials_done"] == 3 and spec["status"] == "finished"
    assert spec["algo"] == "rand"


@pytest.mark.slow
@pytest.mark.claim("`--seed` defaults to the settings' `random_seed`")
@pytest.mark.claim('SIGUSR1 / Ctrl-C stop a sweep the same way')
def test_sigusr1_and_ctrl_c_stop_a_sweep_like_sigterm_and_the_seed_defaults_to_random_seed(workdir, tmp_path):
    """Two sweeps at once: one stopped by SIGUSR1 (Slurm's warning), one by Ctrl-C (SIGINT to its process group, as
    a terminal sends it). The first has no --seed, the second `--seed <random_seed>`: both sample the same point."""
    random_seed = 42  # the regression example's
    sweeps = {}
    for signum, seed_arguments in ((signal.SIGUSR1, ()), (signal.SIGINT, ("--seed", str(random_seed)))):
        name = signal.Signals(signum).name
        settings = settings_variant(workdir, f"stop_{name}.py", [f"workingFolder = 'experiments/{name}'"])
        assert f"random_seed = {random_seed}\n" in (workdir / settings).read_text()
        out = open(tmp_path / f"{name}.out", "w")
        process = subprocess.Popen(cli_command("sweep", "-u", str(settings), "--max-evals", "2", *seed_arguments,
                                               "--hparam", "nbEpoch=50"),
                                   cwd=workdir, env=cli_env(), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        out.close()
        sweeps[signum] = (process, workdir / "experiments" / name, settings)
    try:
        for signum, (process, working_folder, _) in sweeps.items():
            experiment = wait_for(lambda: next((path.parent for path in working_folder.glob("*_sweep_*/*/run.json")
                                                if read_run(path.parent)["epochs_completed"] >= 1), None),
                                  180, f"the first trial's first epoch in {working_folder}")
            if signum == signal.SIGINT:
                os.killpg(process.pid, signum)  # Ctrl-C: the terminal signals the foreground process group
            else:
                process.send_signal(signum)
            sweeps[signum] += (experiment,)
        for process, *_ in sweeps.values():
            process.wait(timeout=90)
    finally:
        for process, *_ in sweeps.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    sampled = {}
    for signum, (process, working_folder, _, experiment) in sweeps.items():
        name = signal.Signals(signum).name
        output = (tmp_path / f"{name}.out").read_text()
        assert process.returncode == 128 + signum, (name, output)
        assert "status:            interrupted (0 of 2 trials done)" in output
        (folder,) = working_folder.glob("*_sweep_*")
        assert f"resume with:       {RAN_AS} sweep --resume {folder.relative_to(workdir)}" in output
        run = read_run(experiment)
        trial_log = "".join(path.read_text() for path in (folder / "trials").glob("*.log"))
        assert run["status"] == "interrupted" and 1 <= run["epochs_completed"] < 50, (name, run, trial_log)
        assert any((experiment / "checkpoints").iterdir())
        spec = json.loads((folder / "sweep.json").read_text())
        assert spec["status"] == "interrupted" and spec["exit_code"] == 128 + signum
        assert spec["seed"] == random_seed
        assert trial_experiments(folder) == [experiment]
        (record,) = trial_records(folder).values()
        assert record["experiment"] == str(experiment)
        sampled[name] = record["hparams"]
    print("first trial's hparams:", sampled)
    assert sampled["SIGUSR1"] == sampled["SIGINT"]  # no --seed is --seed <random_seed>
    settings = sweeps[signal.SIGUSR1][2]
    assert sampled["SIGUSR1"] == suggestion(settings, "tpe", random_seed)
    assert sampled["SIGUSR1"] != suggestion(settings, "tpe", random_seed + 1)  # another seed, another point
