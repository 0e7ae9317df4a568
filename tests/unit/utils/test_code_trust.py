"""utils/code_trust.py and its two callers: a folder whose code another user owns is not run without --trust-code."""

import json
import os
import shutil

import pytest

from experiments_manager.utils.code_trust import foreign_code_problem, foreign_owners, user_name
from experiments_manager.utils.errors import UserInputError

OTHER_UID = 54321  # no user of this machine: named 'uid 54321'
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: gives files to another user (CI runs as root)")


def test_own_files_are_no_problem_and_anothers_are_one_line_naming_owner_reader_and_flag(tmp_path):
    files = [tmp_path / "run.json", tmp_path / "mysettings.py"]
    for path in files:
        path.write_text("")
    assert foreign_code_problem(tmp_path, files) is None
    # the same files, read by another user: what a colleague sees of this folder
    me = user_name(os.geteuid())
    assert foreign_code_problem(tmp_path, files, uid=OTHER_UID) == (
        f"{tmp_path}: its code (mysettings.py, run.json) belongs to {me}, not to you (uid {OTHER_UID}): loading it "
        "runs that code; if you trust it, add --trust-code (Python: trust_code=True); see "
        "docs/explanation/security.md")


def test_a_missing_file_is_left_to_its_reader(tmp_path):
    assert foreign_owners([tmp_path / "gone.py"], uid=OTHER_UID) == {}


@as_root
def test_a_link_of_mine_to_anothers_file_and_anothers_folder_are_found(tmp_path):
    target = tmp_path / "elsewhere.py"
    target.write_text("")
    os.chown(target, OTHER_UID, OTHER_UID)
    os.symlink(target, tmp_path / "model.py")
    assert foreign_owners([tmp_path / "model.py"]) == {tmp_path / "model.py": OTHER_UID}
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text("")
    os.chown(folder, OTHER_UID, OTHER_UID)
    problem = foreign_code_problem(folder, [folder / "run.json"])
    assert problem is not None and problem.startswith(f"{folder}: its code (run.json) belongs to uid {OTHER_UID}")


def _run_folder(tmp_path, repo):
    """A finished run's folder (an earlier engine's record, the regression example's copies)."""
    run = tmp_path / "colleague_run"
    run.mkdir()
    shutil.copy(repo / "tests/data/run_json/v1_finished.json", run / "run.json")
    shutil.copy(repo / "examples/regression/mysettings_curve_fitting.py", run / "experiment_settings.py")
    model_name = json.loads((run / "run.json").read_text())["model_name"]
    shutil.copy(repo / "examples/regression/model_curve_fitting.py", run / f"{model_name}.py")
    return run, run / f"{model_name}.py"


@as_root
def test_a_run_whose_model_copy_another_user_owns_loads_only_when_trusted(tmp_path):
    from conftest import REPO
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings import load_experiment_settings

    run, model_copy = _run_folder(tmp_path, REPO)
    Experiment.open(run).refuse_foreign_code()  # mine
    os.chown(model_copy, OTHER_UID, OTHER_UID)
    with pytest.raises(UserInputError, match=rf"its code \({model_copy.name}\) belongs to uid {OTHER_UID}"):
        load_experiment_settings(Experiment.open(run))  # the one place a run's copies are executed
    Experiment.open(run, trust_code=True).refuse_foreign_code()


@as_root
def test_a_sweep_whose_settings_another_user_owns_resumes_only_when_trusted(tmp_path):
    from experiments_manager.sweeps.folder import SweepFolder

    sweep = SweepFolder(tmp_path)
    sweep.spec_file.write_text("{}")
    sweep.settings_copy.write_text("")
    named = tmp_path / "theirs.py"
    named.write_text("")
    spec = {"settings_file": str(named), "model_file": None}
    sweep.refuse_foreign_code(spec, trust_code=False)  # type: ignore[arg-type]
    os.chown(named, OTHER_UID, OTHER_UID)
    with pytest.raises(UserInputError, match=r"its code \(theirs.py\) belongs to uid 54321"):
        sweep.refuse_foreign_code(spec, trust_code=False)  # type: ignore[arg-type]
    sweep.refuse_foreign_code(spec, trust_code=True)  # type: ignore[arg-type]
