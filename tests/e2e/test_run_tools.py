"""Comparing and cleaning up runs, as a researcher does after a day of training: `list` sorted, filtered and as CSV /
JSON, `diff` of two runs, `prune` (a dry run, then --yes) of failed runs, of a sweep's worst trials and of finished
runs' checkpoints. One module-scoped lab of real runs: a real 3-trial sweep (`sweep` on the command line), two runs
that differ by an hparam and a settings line, and a run whose settings function fails in epoch 2."""

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, cli_env, dead_pid, read_run, run_command, settings_variant

pytestmark = pytest.mark.slow  # its module fixtures train several runs (make test-fast leaves it out)

WORKING_FOLDER = "experiments/examples/curve_fitting"
SMALL = ["nb_train_samples = 300", "nb_val_samples = 100"]


def cli(cwd, *arguments):
    return run_command(arguments, cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The working folder of six real runs: a sweep's 3 trials (nbEpoch 2), `a` and `b` (nbEpoch 2; b from a settings
    file with one more line, `batch_size = 30`, and learningRate=0.003), and `failed` (its
    `custom_tensorboard_logs` raises in epoch 2). The first trial holds two evaluations in run.json's
    `evaluations` record, as an earlier engine's `evaluate` wrote them (an evaluation is its own folder now)."""
    import types

    from experiments_manager import training
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.utils.errors import UserInputError

    root = tmp_path_factory.mktemp("run_tools")
    shutil.copytree(REPO / "examples", root / "examples")
    small = settings_variant(root, "small.py", SMALL)
    batches = settings_variant(root, "small_batches.py", SMALL + ["batch_size = 30"])
    late = settings_variant(root, "late.py", SMALL + [
        "def custom_tensorboard_logs(model, epoch, logs):",
        "    if epoch == 1:  # Keras' epoch, from 0: the second",
        "        raise ValueError('the disk for extra logs is full')",
    ])
    sweep = cli(root, "sweep", "-u", str(small), "--max-evals", "3", "--hparam", "nbEpoch=2")
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        a = training.train(str(small), {"nbEpoch": 2}).experiment.root
        b = training.train(str(batches), {"nbEpoch": 2, "learningRate": 0.003}).experiment.root
        with pytest.raises(UserInputError):
            training.train(str(late), {"nbEpoch": 3})
    working_folder = root / WORKING_FOLDER
    (sweep_folder,) = working_folder.glob("*_sweep_*")
    trials = sorted(path.parent for path in sweep_folder.glob("*/run.json"))
    (failed,) = [path.parent for path in working_folder.glob("*/run.json") if read_run(path.parent)["status"] == "failed"]
    evaluations = [{"version": 1, "data": "test pipeline", "metrics": {"loss": 9.0, "mean_absolute_error": 9.0},
                    "at": "2026-11-23T10:00:00+00:00", "report": "evaluations/1"},
                   {"version": 2, "data": "test pipeline", "metrics": {"loss": 0.25, "mean_absolute_error": 0.4},
                    "at": "2026-11-23T11:00:00+00:00", "report": "evaluations/2"}]
    Experiment(trials[0]).write_run_info({**read_run(trials[0]), "evaluations": evaluations})
    return types.SimpleNamespace(root=root, working_folder=working_folder, sweep=sweep_folder, trials=trials,
                                 a=root / a, b=root / b, failed=failed)


def _runs(lab):
    return [lab.a, lab.b, lab.failed, *lab.trials]


@pytest.mark.claim(
    '`--status`, `--where`, `--sort` (hparams, last-epoch metrics, `test_<name>`), `--format csv` and `json` as '
    'run.json says; a key that is no column is one line naming the known ones, exit 2; `em.list_runs`')
def test_list_sorts_filters_and_prints_csv_and_json_as_run_json_says(lab):
    import experiments_manager as em

    listed = cli(lab.root, "list", WORKING_FOLDER, "--sort=-best_value", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert sorted(Path(run["path"]) for run in runs) == sorted(_runs(lab))
    for run in runs:
        info = read_run(run["path"])
        assert (run["status"], run["best_value"], run["best_epoch"], run["exported_versions"], run["hparams"]) == (
            info["status"], info["best_value"], info["best_epoch"], info["exported_versions"], info["hparams"])
    assert [run["best_value"] for run in runs] == sorted((read_run(path)["best_value"] for path in _runs(lab)),
                                                         reverse=True)
    (evaluated,) = [run for run in runs if Path(run["path"]) == lab.trials[0]]
    assert (evaluated["test_loss"], evaluated["test_mean_absolute_error"]) == (0.25, 0.4)  # the newest evaluation

    # a filter on an hparam, as CSV: the table's columns (the key filtered by added), header first, numbers in full
    slow = sorted(path for path in _runs(lab) if read_run(path)["hparams"]["learningRate"] < 0.005)
    assert lab.b in slow
    table = cli(lab.root, "list", WORKING_FOLDER, "--where", "learningRate<0.005")
    as_csv = cli(lab.root, "list", WORKING_FOLDER, "--where", "learningRate<0.005", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    header = table.stdout.splitlines()[0].split()
    assert as_csv.stdout.splitlines()[0].split(",") == [title.lower() if title.isupper() else title for title in header]
    tests = ["test_loss", "test_mean_absolute_error"] if lab.trials[0] in slow else []  # of the runs shown
    assert header == ["EXPERIMENT", "STATUS", "EPOCH", "BEST", "BEST_EPOCH", "VERSIONS", "DEVICE_HOURS", *tests,
                      "learningRate"]
    assert sorted(lab.working_folder / row["experiment"] for row in rows) == slow
    for row in rows:
        info = read_run(lab.working_folder / row["experiment"])
        assert float(row["best"]) == info["best_value"] and float(row["learningRate"]) == info["hparams"]["learningRate"]
        assert row["epoch"] == f"{info['epochs_completed']}/{info['nbEpoch']}" and row["status"] == info["status"]

    # status, a metric of the last epoch, an evaluation's column; the Python API gives the same rows
    failed = cli(lab.root, "list", WORKING_FOLDER, "--status", "failed", "--sort", "val_loss")
    (row,) = failed.stdout.splitlines()[1:]
    assert row.startswith(lab.failed.name) and " failed " in row and " 1/3 " in row
    assert failed.stdout.splitlines()[0].split()[-1] == "val_loss"
    assert f" {read_run(lab.failed)['last_epoch_logs']['val_loss']:.4g}" in row
    by_test = cli(lab.root, "list", WORKING_FOLDER, "--sort", "test_loss", "--format", "json")
    assert Path(json.loads(by_test.stdout)[0]["path"]) == lab.trials[0]  # the one evaluated; the others come last
    api = em.list_runs(lab.working_folder, where=["learningRate<0.005"], sort=["-best_value"])
    assert [Path(run["path"]) for run in api] == sorted(slow, key=lambda path: -read_run(path)["best_value"])

    # a key that is no column: one line naming the known ones, exit 2
    unknown = cli(lab.root, "list", WORKING_FOLDER, "--where", "optimizer=adam")
    assert unknown.returncode == 2 and unknown.stdout == "", unknown
    (line,) = unknown.stderr.splitlines()
    assert line.startswith(f"error: {WORKING_FOLDER}: --where: expected a column (") and line.endswith(", got 'optimizer'")
    assert all(f" {key}," in line for key in ("best_value", "learningRate", "val_loss", "test_loss"))
    assert cli(lab.root, "list", WORKING_FOLDER, "--sort", "val_los").returncode == 2


@pytest.mark.claim(
    '`diff RUN_A RUN_B`: the hparam and the settings line that differ as unified diffs, `same` for the rest, no '
    'colour off a terminal, `--exit-code`, a path that is no run is one line, exit 2')
def test_diff_shows_the_hparam_and_the_settings_line_that_differ_and_same_for_the_rest(lab):
    result = cli(lab.root, "diff", str(lab.a), str(lab.b))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [f"a: {lab.a}", f"b: {lab.b}"]
    assert "-learningRate = 0.01" in lines and "+learningRate = 0.003   # --hparam" in lines
    assert " nbEpoch = 2   # --hparam" in lines  # unchanged context
    assert "+batch_size = 30" in lines and not [line for line in lines if line.startswith("-batch_size")]
    assert any(line.startswith("--- a/experiment_settings.py (copy of ") and line.endswith("/small.py)") for line in lines)
    for section in ("model file", "stack", "seed"):
        assert f"{section}: same" in lines
    assert "modules they import: same" in lines  # (trained in this process: its test modules, the same files)
    assert "newest evaluation: same (none)" in lines
    assert f"-best value = {read_run(lab.a)['best_value']!r}" in lines  # the outcome differs
    assert f"+best value = {read_run(lab.b)['best_value']!r}" in lines
    assert "\033[" not in result.stdout  # no colours: not a terminal
    assert cli(lab.root, "diff", "--exit-code", str(lab.a), str(lab.b)).returncode == 1
    itself = cli(lab.root, "diff", "--exit-code", str(lab.a), str(lab.a))
    assert itself.returncode == 0 and all(line.endswith(("same", "same (none)")) for line in itself.stdout.splitlines()[2:])
    # the newest evaluation is compared too; a path that is no run is one line, exit 2
    evaluated = cli(lab.root, "diff", str(lab.trials[0]), str(lab.trials[1])).stdout.splitlines()
    assert "-metric loss = 0.25" in evaluated and "newest evaluation:" in evaluated
    nothing = cli(lab.root, "diff", str(lab.a), WORKING_FOLDER)
    assert nothing.returncode == 2 and nothing.stderr.splitlines() == [
        f"error: {WORKING_FOLDER}: not an experiment folder (no run.json)"]


def _copy_of_the_lab(lab, tmp_path):
    """The lab's working folder copied (the sweep's journal names the original paths: a moved sweep still works)."""
    copy = tmp_path / "lab"
    shutil.copytree(lab.working_folder, copy, symlinks=True)
    return copy


def _du(path):
    return int(subprocess.run(["du", "-sB1", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def _tree(folder):
    """Every path below `folder` with its size (a held lease's heartbeat left out)."""
    return sorted((str(path.relative_to(folder)), path.stat().st_size) for path in Path(folder).rglob("*")
                  if path.name != "lease.json")


def _digests(folder):
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(Path(folder).rglob("*")) if path.is_file()}


def _said(result, first, size, rest):
    """Whether `prune` printed a line `<first>  <size, right-aligned>  <rest...>`."""
    pattern = rf"^{re.escape(first)} +{re.escape(size)}  {re.escape(rest)}"
    return re.search(pattern, result.stdout, re.MULTILINE) is not None


@pytest.mark.claim(
    '`prune` is a dry run (nothing changes; sizes as `du` counts them); `--yes` deletes exactly those; a run being '
    "written is skipped; a crash's `.deleting-` leftover is removed; `list` no longer shows them")
def test_prune_is_a_dry_run_until_yes_then_deletes_exactly_those_and_skips_a_run_being_written(lab, tmp_path):
    from experiments_manager.runs.pruning import human_size
    from experiments_manager.utils.lease import Lease

    copy = _copy_of_the_lab(lab, tmp_path)
    failed = copy / lab.failed.name
    held = copy / f"{lab.failed.name}_held"  # another failed run, being written right now (its lease held here)
    shutil.copytree(failed, held)
    leftover = copy / f".deleting-{lab.a.name}-{dead_pid()}"  # what a prune killed between its rename and rmtree left
    shutil.copytree(copy / lab.a.name, leftover)
    sizes = {failed: _du(failed), leftover: _du(leftover)}
    lease = Lease.acquire(held, ["a test"], what="experiment")
    try:
        before = _tree(copy)
        dry = cli(tmp_path, "prune", "lab")
        assert dry.returncode == 0, dry.stderr
        assert _tree(copy) == before  # a dry run deletes nothing
        assert _said(dry, "would delete", human_size(sizes[failed]), f"lab/{failed.name}  (failed)")
        assert _said(dry, "would delete", human_size(sizes[leftover]), f"lab/{leftover.name}  (left by a removal")
        assert _said(dry, "skipped", "", f"lab/{held.name}  (being written by pid {os.getpid()} on host ")
        assert _said(dry, "total", human_size(sum(sizes.values())), "in 2 paths: a dry run, nothing deleted")

        done = cli(tmp_path, "prune", "lab", "--yes")
        assert done.returncode == 0, done.stderr
        assert _said(done, "deleted", human_size(sizes[failed]), f"lab/{failed.name}  (failed)")
        assert _said(done, "deleted", human_size(sizes[leftover]), f"lab/{leftover.name}  (left by a removal")
        assert _said(done, "total freed", human_size(sum(sizes.values())), "in 2 paths")
        assert done.stdout.count("deleted ") == 2
        assert not failed.exists() and not leftover.exists() and held.is_dir()
        assert sorted(set(before) - set(_tree(copy))) == sorted(
            entry for entry in before if entry[0].split("/")[0] in (failed.name, leftover.name))
        assert not [path for path in copy.iterdir() if path.name.startswith(".")]  # nothing hidden left behind
    finally:
        lease.release()
    listed = cli(tmp_path, "list", "lab", "--status", "failed")
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [held.name]  # the pruned one is gone
    assert "deleted" in cli(tmp_path, "prune", "lab", "--yes").stdout  # once no longer written, it goes too
    assert cli(tmp_path, "prune", "lab").stdout.strip() == "nothing to prune in lab"


@pytest.mark.claim(
    "`prune --checkpoints` keeps every exported version bit for bit; `--keep-best N` keeps a real sweep's best "
    'trials; `--keep-best` without a sweep is one line, exit 2')
def test_prune_checkpoints_keeps_the_exports_and_keep_best_keeps_the_best_trials_of_a_real_sweep(lab, tmp_path):
    from experiments_manager.runs.pruning import human_size

    copy = _copy_of_the_lab(lab, tmp_path)
    finished = sorted(path.parent for path in copy.glob("**/run.json") if read_run(path.parent)["status"] == "finished")
    assert len(finished) == 5
    exports = {run: _digests(run / "exported_models") for run in finished}
    sizes = {run: _du(run / "checkpoints") for run in finished}
    dry = cli(tmp_path, "prune", "lab", "--checkpoints")
    for run in finished:
        assert _said(dry, "would delete", human_size(sizes[run]), f"{Path('lab', run.relative_to(copy), 'checkpoints')}  "
                     "(checkpoints of a finished run; it can no longer be resumed or extended)")
    assert dry.stdout.count("would delete ") == 5 and all((run / "checkpoints").is_dir() for run in finished)
    done = cli(tmp_path, "prune", "lab", "--checkpoints", "--yes")
    assert done.returncode == 0 and done.stdout.count("deleted ") == 5, done.stdout
    assert _said(done, "total freed", human_size(sum(sizes.values())), "in 5 paths")
    for run in finished:
        assert not (run / "checkpoints").exists() and _digests(run / "exported_models") == exports[run]
        info = read_run(run)
        assert info["checkpoints_pruned"] and info["exported_versions"]
        assert sorted(int(path.name) for path in (run / "exported_models").iterdir()) == info["exported_versions"]

    # all but the best trial of the sweep (by their run.json's best value); --keep-best needs a sweep folder
    sweep = copy / lab.sweep.name
    trials = sorted((read_run(path.parent)["best_value"], path.parent) for path in sweep.glob("*/run.json"))
    dry = cli(tmp_path, "prune", str(Path("lab", sweep.name)), "--keep-best", "1")
    for rank, (value, trial) in enumerate(trials[1:], 2):
        assert f"  {Path('lab', sweep.name, trial.name)}  (not among the best 1 of its sweep: val_loss={value:.4g}, " \
               f"rank {rank} of 3)" in dry.stdout, dry.stdout
    assert cli(tmp_path, "prune", str(Path("lab", sweep.name)), "--keep-best", "1", "--yes").returncode == 0
    assert [path.parent for path in sweep.glob("*/run.json")] == [trials[0][1]]
    assert Path(json.loads((sweep / "sweep.json").read_text())["best"]["experiment"]).name == trials[0][1].name
    listed = cli(tmp_path, "list", "lab", "--format", "json")
    assert len(json.loads(listed.stdout)) == 4
    nothing = cli(tmp_path, "prune", str(Path("lab", lab.a.name)), "--keep-best", "1")
    assert nothing.returncode == 2 and nothing.stderr.startswith(f"error: lab/{lab.a.name}: --keep-best: expected a sweep")


@pytest.mark.claim("`check RUN` verifies a run folder (run.json, checkpoints, versions, history.csv, train.log) and "
                   "rebuilds a torn history.csv of a finished run from its newest checkpoint; damage it cannot "
                   "derive is named, exit 1")
def test_check_names_the_damage_and_rebuilds_a_torn_history_of_a_finished_run(lab, tmp_path):
    """After a power loss: history.csv torn (a cut row, NUL bytes), train.log empty, a version's file overwritten.
    `check` rebuilds history.csv as it was, names the version and the lost log, and exits 1 (damage remains)."""
    run = tmp_path / "run"
    shutil.copytree(lab.a, run)
    sound = cli(tmp_path, "check", str(run))
    assert sound.returncode == 0, sound.stdout + sound.stderr
    assert f"{run}: history.csv: sound (2 row(s))" in sound.stdout.splitlines(), sound.stdout
    original = (run / "history.csv").read_text()
    (run / "history.csv").write_bytes(original.encode()[: len(original) // 2 + 3] + b"\0" * 40)
    (run / "train.log").write_bytes(b"")
    version = sorted(path for path in (run / "exported_models").iterdir() if path.name.isdigit())[-1]
    (version / "saved_model.pb").write_bytes(b"\0" * 16)

    damaged = cli(tmp_path, "check", str(run))
    lines = damaged.stdout.splitlines()
    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    assert any(line.startswith(f"{run}: versions: ") and f"damaged: {version.name} (" in line for line in lines), lines
    assert any(line.startswith(f"{run}: history.csv: ") and "rebuilt from the newest sound checkpoint (2 row(s))"
               in line for line in lines), lines
    assert f"{run}: train.log: empty (lost, as after a power loss): a copy of the console, not derivable" in lines
    assert (run / "history.csv").read_text() == original
    assert cli(tmp_path, "check", "--no-repair", str(run)).returncode == 1  # the version is still damaged
