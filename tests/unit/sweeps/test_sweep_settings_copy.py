"""sweeps/folder.py's settings copy: a resumed sweep's new trials execute `sweep_settings.py` (checked against the
SHA-256 sweep.json records) as the user's file, never a settings path read from sweep.json; a change a resume
accepted replaces the copy."""

import json

import pytest

from experiments_manager.run.attempts import file_sha256
from experiments_manager.sweeps.folder import SweepFolder
from experiments_manager.utils.errors import UserInputError


def sweep_with_copy(tmp_path, text="hparams = {'nbEpoch': 1}\n"):
    """A sweep folder holding `sweep_settings.py` and sweep.json naming the user's file (same content): (folder, spec,
    the user's file)."""
    original = tmp_path / "proj" / "settings.py"
    original.parent.mkdir()
    original.write_text(text)
    sweep = SweepFolder(tmp_path / "s_sweep_1")
    sweep.root.mkdir()
    sweep.settings_copy.write_text(text)
    spec = {"settings_file": str(original), "settings_sha256": file_sha256(original)}
    sweep.spec_file.write_text(json.dumps(spec))
    return sweep, spec, original


@pytest.mark.claim("a resumed sweep's new trials run its copy of the settings (checked against sweep.json's SHA-256) "
                   "as the user's file; no settings path read from sweep.json is executed",
                   note="(and an accepted change replaces the copy; the hostile path end to end in "
                        "test_sweep_trials_file.py)")
def test_the_copy_runs_as_the_users_file_and_a_copy_changed_in_the_folder_is_refused(tmp_path):
    sweep, spec, original = sweep_with_copy(tmp_path)
    source = sweep.settings_source(spec)
    assert source.runs == sweep.settings_copy.resolve() and source.script == original

    sweep.settings_copy.write_text("import os\nos.system('touch RAN')\n")
    (problem,) = pytest.raises(UserInputError, sweep.settings_source, spec).value.problems
    assert problem.startswith(f"{sweep.settings_copy}: expected the settings sweep.json records (SHA-256 ")
    assert "changed inside the sweep folder" in problem

    sweep.settings_copy.unlink()
    (problem,) = pytest.raises(UserInputError, sweep.settings_source, spec).value.problems
    assert problem == (f"{sweep.settings_copy}: not found (the sweep's copy of its settings, which its new trials "
                       f"train from); copy {original} there to resume the sweep")


def test_a_sweep_json_naming_another_file_never_makes_it_run(tmp_path):
    sweep, spec, _ = sweep_with_copy(tmp_path)
    hostile = tmp_path / "outside" / "evil.py"
    hostile.parent.mkdir()
    hostile.write_text("import os\nos.system('touch RAN')\n")
    tampered = {"settings_file": str(hostile), "settings_sha256": file_sha256(hostile)}  # its hash "updated" too
    with pytest.raises(UserInputError):
        sweep.settings_source(tampered)  # the copy is not what the record says: refused before anything runs
    source = sweep.settings_source({"settings_file": str(hostile)})  # an older record without a hash
    assert source.runs == sweep.settings_copy.resolve()  # the copy runs; the path is only its __file__


def test_an_accepted_change_of_the_settings_replaces_the_copy_and_the_copy_then_checks(tmp_path):
    sweep, spec, original = sweep_with_copy(tmp_path)
    assert sweep.take_accepted_settings(spec) is None  # nothing accepted
    original.write_text("hparams = {'nbEpoch': 2}\n")
    accepted = {**spec, "code": {str(original): file_sha256(original)}}
    assert sweep.take_accepted_settings(accepted) == f"sweep_settings.py (replaced by {original})"
    assert sweep.settings_copy.read_text() == "hparams = {'nbEpoch': 2}\n"
    assert sweep.settings_source(accepted).runs == sweep.settings_copy.resolve()
    original.write_text("hparams = {'nbEpoch': 3}\n")  # edited again, not accepted: the copy stays
    assert sweep.take_accepted_settings(accepted) is None
    assert sweep.settings_copy.read_text() == "hparams = {'nbEpoch': 2}\n"


def test_a_change_accepted_now_runs_the_users_file_until_sweep_json_records_it(tmp_path):
    sweep, spec, original = sweep_with_copy(tmp_path)
    original.write_text("hparams = {'nbEpoch': 2}\n")
    accepted = {**spec, "code": {str(original): file_sha256(original)}}
    with pytest.raises(UserInputError):
        sweep.settings_source(accepted)  # not accepted by this process: the copy is not what the record says
    source = sweep.settings_source(accepted, accepted_now=True)  # this resume's --accept-code-change
    assert source.runs == source.script == original.resolve()
    sweep.take_accepted_settings(accepted)  # once sweep.json holds it: the copy from then on
    assert sweep.settings_source(accepted).runs == sweep.settings_copy.resolve()
