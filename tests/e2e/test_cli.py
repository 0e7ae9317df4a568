"""The command line starts fast and documents every command."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments_manager.cli import SUBCOMMANDS

from conftest import cli_env, run_command


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from experiments_manager.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported by --help'\n"
        "assert 'keras' not in sys.modules, 'keras imported by --help'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "list" in result.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
@pytest.mark.claim('`export --help` imports no TensorFlow')
def test_every_command_has_help_without_importing_tensorflow(command):
    code = (
        "import sys\n"
        "from experiments_manager.cli import main\n"
        "try:\n"
        f"    main([{command!r}, '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert not {'tensorflow', 'confluent_kafka', 'hyperopt', 'flwr'} & set(sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: experiments-manager " + command in result.stdout


@pytest.mark.claim('`--hparam` values are Python literals, else strings', note='(a bad one)')
def test_bad_hparam_syntax_is_one_line_exit_2(run_cli):
    result = run_cli("train", "-u", "examples/regression/mysettings_curve_fitting.py", "--hparam", "no_equal_sign")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --hparam: 'no_equal_sign': expected key=value (or +key=value for a new hparam) with key a Python name"
    ]


TRAIN = ("train", "-u", "examples/regression/mysettings_curve_fitting.py")
LEASE_TIMEOUT_LINE = ("error: EXPERIMENTS_MANAGER_LEASE_TIMEOUT: expected at least 10 seconds (a heartbeat is renewed "
                      "every sixth of it and other nodes see it up to ~2 s late), got '1'")


@pytest.mark.claim("a lease timeout the lease cannot take (EXPERIMENTS_MANAGER_LEASE_TIMEOUT) is one line, exit 2, "
                   "before any folder exists")
@pytest.mark.claim("a bad TF_CONFIG or Slurm step variables that disagree are one line naming the variable",
                   note="(a TF_CONFIG whose port TensorFlow would refuse, a task number beyond the step's: no folder)")
@pytest.mark.parametrize("variables, command, line", [
    ({"EXPERIMENTS_MANAGER_LEASE_TIMEOUT": "1"}, TRAIN, LEASE_TIMEOUT_LINE),
    ({"EXPERIMENTS_MANAGER_LEASE_TIMEOUT": "1"}, ("sweep", "-u", "examples/regression/mysettings_curve_fitting.py",
                                                  "--max-evals", "1"), LEASE_TIMEOUT_LINE),
    ({"TF_CONFIG": '{"cluster": {"worker": ["a:1", "b:x"]}, "task": {"type": "worker", "index": 0}}'}, TRAIN,
     "error: TF_CONFIG: cluster: expected each task as 'host:port' (a port 1-65535), got 'b:x'"),
    ({"SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "3", "SLURM_STEP_TASKS_PER_NODE": "2",
      "SLURM_STEP_NODELIST": "n1"}, TRAIN,
     "error: SLURM_PROCID: expected a task number below SLURM_STEP_NUM_TASKS=2, got 3"),
])
def test_a_bad_cluster_environment_is_refused_before_any_folder_exists(run_cli, workdir, monkeypatch, variables,
                                                                        command, line):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    result = run_cli(*command)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [line], result.stderr
    assert not (workdir / "experiments").exists()


MISTYPED = {  # a command given a folder or settings file that is not there -> its one line
    ("train", "--resume", "does/not/exist"): "does/not/exist: not an experiment folder (no run.json)",
    ("train", "-u", "nope.py"): "nope.py: settings file not found",
    ("evaluate", "does/not/exist"): "does/not/exist: not an experiment folder (no run.json)",
    ("sweep", "--resume", "does/not/exist"): "does/not/exist: not a sweep folder (no sweep.json)",
    ("sweep", "-u", "nope.py", "--max-evals", "3"): "nope.py: settings file not found",
    ("sweep", "-u", "nope.py"): "--max-evals: required for a new sweep (the number of trials)",
    ("federated", "simulate", "-u", "nope.py"): "nope.py: settings file not found",
}


@pytest.mark.claim("a folder that is not a run (or a sweep) and a settings file that is not there are one line, exit 2, "
                   "said before TensorFlow is imported (`train`, `evaluate`, `sweep`, `federated`)")
def test_a_mistyped_folder_or_settings_file_is_one_line_before_tensorflow_is_imported(tmp_path):
    code = (
        "import sys\n"
        "from experiments_manager.cli import main\n"
        f"codes = [main(list(argv)) for argv in {list(MISTYPED)!r}]\n"
        "print(codes, 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.stdout.strip() == f"{[2] * len(MISTYPED)} False", result.stderr
    assert result.stderr.splitlines() == [f"error: {line}" for line in MISTYPED.values()]
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_list_of_missing_folder_is_clear(run_cli):
    result = run_cli("list", "nowhere")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: nowhere: no such folder"


@pytest.mark.claim("a folder is data: run.json is read through one validating reader, a bad or hostile field one line "
                   "naming the file and the field, exit 2; no name read from it leads out of the folder",
                   note="(a colleague's run whose model_name leads out of it: evaluate, resume, export, predict, "
                   "em.load, list)")
def test_a_run_whose_model_name_leads_out_of_it_runs_nothing_and_writes_nothing(tmp_path):
    """run.json's `model_name` set to `../outside/evil`, a module there that leaves a marker: no command imports
    it; each says so in one line naming run.json and the key, exit 2; nothing in or beside the folder changes."""
    import json
    import shutil

    from conftest import REPO

    run = tmp_path / "colleague_run"
    run.mkdir()
    record = json.loads((REPO / "tests/data/run_json/v1_finished.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "model_name": "../outside/evil"}))
    shutil.copy(REPO / "examples/regression/mysettings_curve_fitting.py", run / "experiment_settings.py")
    shutil.copy(REPO / "examples/regression/model_curve_fitting.py", run / "model_curve_fitting.py")
    (tmp_path / "outside").mkdir()
    marker = tmp_path / "outside" / "RAN"
    (tmp_path / "outside" / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    line = (f"error: {run / 'run.json'}: model_name: expected a model name without '/', '..' or spaces (the model "
            "file's name without .py), got '../outside/evil'")
    for command in (["evaluate", str(run)], ["train", "--resume", str(run), "--more-epochs", "1"],
                    ["export", str(run), "--format", "tflite"], ["predict", "--model_dir", str(run)]):
        result = run_command(command, env=cli_env(), capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert (result.returncode, result.stderr.strip()) == (2, line), (command, result.stderr)
    code = ("import experiments_manager as em, sys\n"
            "try:\n"
            f"    em.load({str(run)!r})\n"
            "except em.UserInputError as error:\n"
            "    print(error)\n"
            "print('tensorflow' in sys.modules)\n")
    loaded = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, cwd=tmp_path)
    assert loaded.stdout.splitlines() == [line.removeprefix("error: "), "False"], loaded.stderr
    listed = run_command(["list", str(tmp_path), "--format", "json"],
                         env=cli_env(), capture_output=True, text=True, cwd=tmp_path)
    assert [row["status"] for row in json.loads(listed.stdout)] == ["unreadable run.json (bad model_name)"], listed
    assert not marker.exists()
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before


@pytest.mark.claim("a folder is data: nothing is written through a symbolic link inside a run's folder (a resume, "
                   "an evaluation refuse it in one line naming it)")
def test_a_run_whose_train_log_links_out_of_it_is_refused_before_anything_is_written(tmp_path, trained):
    """train.log replaced by a link to a file elsewhere: a resume would append to that file; `evaluations/` a link to
    a folder elsewhere: an evaluation would write there. Each is refused in one line naming the link, exit 2, before
    the run's copies execute (its settings copy leaves a marker, its hash in run.json updated), and nothing changes,
    there or in the run."""
    run, marker = _copy_rewritten_to_leave_a_marker(trained.dir, tmp_path)
    victim, elsewhere = tmp_path / "victim.txt", tmp_path / "elsewhere"
    victim.write_text("someone else's file\n")
    elsewhere.mkdir()
    (run / "train.log").unlink()
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    for command, link, target in ((["train", "--resume", str(run), "--more-epochs", "1"], "train.log", victim),
                                  (["evaluate", str(run), "--data", "unused"], "evaluations", elsewhere)):
        os.symlink(target, run / link)
        result = run_command(command, env=cli_env(), capture_output=True, text=True, cwd=tmp_path, timeout=300)
        errors = [text for text in result.stderr.splitlines() if text.startswith("error:")]
        assert (result.returncode, errors) == (2, [
            f"error: {run / link}: a symbolic link (to {target}) inside the folder: nothing is written through a link "
            "in a run's folder; replace it with a file or folder of its own"]), (command, result.stderr)
    after = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    assert after == {**before, run / "train.log": victim.read_bytes()} and list(elsewhere.iterdir()) == []
    assert not marker.exists()


@pytest.mark.claim("`checkpoints_folder` puts a run's checkpoints elsewhere (scratch storage): `checkpoints/` links "
                   "there, run.json records it, a resume writes through that link only while it leads there, and "
                   "`prune --checkpoints` removes them there")
def test_a_runs_checkpoints_on_scratch_storage_go_through_its_own_link(run_cli, workdir):
    from conftest import read_run, settings_variant

    scratch = workdir / "scratch"
    settings = settings_variant(workdir, "scratch.py", [f"checkpoints_folder = {str(scratch)!r}", "nbEpoch = 2"])
    trained = run_cli("train", "-u", str(settings))
    assert trained.returncode == 0, trained.stdout + trained.stderr
    (run,) = (workdir / "experiments/examples/curve_fitting").iterdir()
    link, place = run / "checkpoints", scratch / run.name
    assert link.is_symlink() and os.readlink(link) == str(place) and read_run(run)["checkpoints_link"] == str(place)
    assert [path.name for path in place.glob("ckpt-*")], list(place.iterdir())
    resumed = run_cli("train", "--resume", str(run), "--more-epochs", "1")
    assert resumed.returncode == 0 and read_run(run)["epochs_completed"] == 3, resumed.stderr
    assert any(path.name.endswith("3") for path in place.glob("ckpt-*"))  # written there, through the link

    link.unlink()
    os.symlink(workdir / "elsewhere", link)  # retargeted: any other link
    refused = run_cli("train", "--resume", str(run), "--more-epochs", "1")
    assert (refused.returncode, [line for line in refused.stderr.splitlines() if line.startswith("error:")]) == (2, [
        f"error: {link}: a symbolic link (to {workdir / 'elsewhere'}) inside the folder: nothing is written through a "
        "link in a run's folder; replace it with a file or folder of its own"]), refused.stderr
    link.unlink()
    os.symlink(place, link)
    pruned = run_cli("prune", str(run.parent), "--checkpoints", "--yes")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert not link.exists() and not link.is_symlink() and not place.exists() and list(scratch.iterdir()) == []


@pytest.mark.claim("a folder whose code another user owns (a colleague's run or sweep) is loaded only with --trust-code "
                   "(Python: trust_code=True): refused otherwise in one line naming the owner, before its code runs")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: gives the folder to another user (CI runs as root)")
def test_a_colleagues_run_whose_copy_was_rewritten_runs_only_with_trust_code(tmp_path, trained):
    """A colleague's folder (another uid) whose settings copy was rewritten, its hash in run.json updated with it: the
    code check cannot tell; evaluate, resume, export and predict refuse it in one line, exit 2, the copy's code never
    runs and nothing changes; em.load refuses it too, and with trust_code=True runs it, as the user chose."""
    import experiments_manager as em

    run, marker = _copy_rewritten_to_leave_a_marker(trained.dir, tmp_path)
    for path in [run, *run.rglob("*")]:
        os.lchown(path, 54321, 54321)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    line = (f"error: {run}: its code (experiment_settings.py, model_curve_fitting.py, run.json) belongs to uid 54321, "
            "not to you (root): loading it runs that code; if you trust it, add --trust-code (Python: "
            "trust_code=True); see docs/explanation/security.md")
    for command in (["evaluate", str(run)], ["train", "--resume", str(run), "--more-epochs", "1"],
                    ["export", str(run), "--format", "tflite"], ["predict", "--model_dir", str(run)]):
        result = run_command(command, env=cli_env(), capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert (result.returncode, result.stderr.strip()) == (2, line), (command, result.stderr)
    with pytest.raises(em.UserInputError, match="belongs to uid 54321"):
        em.load(run)
    assert not marker.exists()
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before
    model = em.load(run, trust_code=True)
    assert marker.read_text() == "ran" and model.version_info["version"] == trained.versions[-1]


@pytest.mark.claim("a sweep's trials are trusted with their sweep: a sweep resumed without --trust-code checks the "
                   "owner of each trial it resumes")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: gives the folder to another user (CI runs as root)")
def test_a_trial_another_user_owns_in_a_sweep_not_trusted_is_refused_before_its_code_runs(tmp_path, trained):
    """A colleague's run planted as a trial's experiment in your sweep: the trial's resume (what a worker's host runs)
    refuses it in one line, recorded as the trial's reason, and its code never runs."""
    import json

    from experiments_manager.sweeps.trial_training import TrialRequest, train_trial

    run, marker = _copy_rewritten_to_leave_a_marker(trained.dir, tmp_path)
    for path in [run, *run.rglob("*")]:
        os.lchown(path, 54321, 54321)
    record = tmp_path / "trials" / "trial-0001.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"number": 1, "experiment": str(run)}))
    trial = train_trial(TrialRequest(record=str(record), log=str(record.with_suffix(".log")), resume=str(run)))
    assert trial.exit_code == 2 and not marker.exists()
    assert json.loads(record.read_text())["reason"] == (
        f"{run}: its code (experiment_settings.py, model_curve_fitting.py, run.json) belongs to uid 54321, not to you "
        "(root): loading it runs that code; if you trust it, add --trust-code (Python: trust_code=True); see "
        "docs/explanation/security.md")


def _copy_rewritten_to_leave_a_marker(trained_run, folder):
    """A copy of `trained_run` in `folder` whose settings copy was rewritten to leave a marker file when it runs, its
    hash in run.json updated with it (what someone who can write the folder does). Returns (the run, the marker)."""
    import hashlib
    import json
    import shutil

    run = folder / "colleague_run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("evaluations"))
    marker, copy = folder / "RAN", run / "experiment_settings.py"
    copy.write_text(copy.read_text() + f"\nopen({str(marker)!r}, 'w').write('ran')\n")
    record = json.loads((run / "run.json").read_text())
    for attempt in record["attempts"]:
        if "experiment_settings.py" in (attempt.get("code") or {}):
            attempt["code"]["experiment_settings.py"] = hashlib.sha256(copy.read_bytes()).hexdigest()
    (run / "run.json").write_text(json.dumps(record))
    return run, marker


def test_list_into_a_pipe_that_closes_early_is_not_a_traceback(tmp_path):
    """`experiments-manager list FOLDER | head -1`: the reader leaves after one line; the writer stops quietly."""
    import json

    from conftest import cli_command

    for index in range(2000):  # ~450 KB of rows: far more than a pipe holds (64 KiB) and head reads before it leaves
        run = tmp_path / (f"run_{index:04d}_" + "x" * 190)
        run.mkdir()
        (run / "run.json").write_text(json.dumps({"status": "finished"}))
    result = subprocess.run(["bash", "-c", '"$@" | head -1; exit "${PIPESTATUS[0]}"', "bash",
                             *cli_command("list", str(tmp_path))], env=cli_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.startswith("EXPERIMENT") and result.stdout.count("\n") == 1, result.stdout[:200]
    assert result.returncode == 141 and result.stderr == "", result.stderr


@pytest.mark.slow
@pytest.mark.claim('several `--hparam` flags are accepted', note='(two `--hparam`)')
def test_train_executes_the_settings_file_once(workdir, run_cli):
    """Module-level code of a settings file (a data download, a print) runs once per `train -u`."""
    from conftest import settings_variant

    settings = settings_variant(workdir, "counted.py", [
        "with open('executions.log', 'a') as _log:",
        "    _log.write('executed\\n')",
    ])
    result = run_cli("train", "-u", str(settings), "--hparam", "nbEpoch=1", "--hparam", "nb_train_samples=200")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (workdir / "executions.log").read_text() == "executed\n"


def test_logging_configured_twice_prints_each_line_once(capfd):
    import logging

    from experiments_manager.utils.logging_setup import configure_logging

    configure_logging()
    configure_logging()  # what a sweep trial or a Flower actor serving client after client does
    logging.getLogger("experiments_manager.test").info("one line")
    assert capfd.readouterr().err.count("one line") == 1


@pytest.mark.claim('pinned versions in `install/constraints.txt`; every import is a declared dependency')
def test_every_third_party_import_is_declared_in_setup_cfg():
    """A fresh `pip install .` must bring what the package imports (not just what happens to be installed)."""
    import ast
    import configparser
    import importlib.metadata
    import re

    from conftest import REPO

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    requirements = config["options"]["install_requires"].split()
    for extra in config["options.extras_require"].values():
        requirements += extra.split()
    declared = {re.split(r"[<>=\[;,]", requirement)[0].lower().replace("_", "-")
                for requirement in requirements if requirement and requirement[0].isalpha()}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for path in (REPO / "experiments_manager").rglob("*.py"):
        tree = ast.parse(path.read_text())
        type_only = {id(inner) for node in ast.walk(tree)  # `if TYPE_CHECKING:` imports never run
                     if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
                     for statement in node.body for inner in ast.walk(statement)}
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "experiments_manager":
                    continue
                providers = {dist.lower().replace("_", "-") for dist in distributions.get(top, [])}
                if not providers & declared:
                    undeclared.setdefault(top, set()).add(str(path.relative_to(REPO)))
    assert not undeclared, f"imported but not in setup.cfg: {undeclared}"


def test_a_misspelt_command_gets_the_closest_one(run_cli):
    result = run_cli("trian", "-u", "examples/regression/mysettings_curve_fitting.py")
    assert result.returncode == 2
    assert "error: 'trian': not a command; did you mean 'train'?" in result.stderr
    unknown = run_cli("fly")
    assert unknown.returncode == 2 and "error: 'fly': not a command (commands: train, serve" in unknown.stderr


@pytest.mark.claim(
    'original spelling `--start_server --model_dir=DIR`',
    note='(weak: the mapping to `serve`, not a served request)')
def test_the_original_framework_spellings_pick_their_command():
    from experiments_manager.cli import _with_default_command

    assert _with_default_command(["--start_server", "--model_dir=exp"]) == ["serve", "--model_dir=exp"]
    assert _with_default_command(["--predict_stream=-1", "--model_dir=exp"]) == ["predict", "--predict_stream=-1",
                                                                                  "--model_dir=exp"]
    assert _with_default_command(["--usersettings", "s.py"]) == ["train", "--usersettings", "s.py"]


@pytest.mark.claim(
    "default ports gRPC 8500 (the settings' `tensorflow_server_port`), REST 8501",
    note='(weak: the defaults, not a server bound to them)')
def test_serving_defaults_are_tf_servings_ports_and_this_machine_only():
    from experiments_manager.serving.server import ServerOptions
    from experiments_manager.settings.sections import ServingSection

    options = ServerOptions()
    assert (options.host, options.grpc_port, options.rest_port) == ("127.0.0.1", 8500, 8501)
    assert ServingSection().port == 8500


@pytest.mark.claim('`--algo tpe\\|rand\\|anneal`')
def test_sweep_algorithms_are_hyperopts_and_a_wrong_one_is_refused(run_cli):
    result = run_cli("sweep", "-u", "examples/regression/mysettings_curve_fitting.py", "--max-evals", "2",
                     "--algo", "bayes")
    assert result.returncode == 2
    assert "argument --algo: invalid choice: 'bayes' (choose from 'tpe', 'rand', 'anneal')" in result.stderr


@pytest.mark.claim(
    'tests needing Chromium or Java skip with one line; `EXPERIMENTS_MANAGER_REAL_PARTS=required` turns the skip '
    'into a failure')
def test_a_missing_real_part_skips_with_one_line_and_fails_when_ci_requires_it(tmp_path):
    test = tmp_path / "test_part.py"
    test.write_text("from conftest import require_real_part\n\n"
                    "def test_needs_it():\n    require_real_part('a flux capacitor is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # tests/: conftest
    env.pop("EXPERIMENTS_MANAGER_REAL_PARTS", None)
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(test)]
    skipped = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert skipped.returncode == 0 and "SKIPPED" in skipped.stdout
    assert "a flux capacitor is not installed here" in skipped.stdout
    required = subprocess.run(command, cwd=tmp_path, env={**env, "EXPERIMENTS_MANAGER_REAL_PARTS": "required"},
                              capture_output=True, text=True, timeout=120)
    assert required.returncode == 1 and "a flux capacitor is not installed here" in required.stdout
