"""run.json's one definition (experiments_manager/run/record.py): the typed record code reads, the keys the reference
page documents, and records written by earlier versions of the engine read as well-formed."""

import json
import typing

import pytest

from conftest import REPO
from experiments_manager.run.record import KEYS, RUN_RECORD_VERSION, RunRecord, record_problems

EARLIER = sorted((REPO / "tests/data/run_json").glob("v1_*.json"))  # written before record_version (version 1)


@pytest.mark.claim("run.json has one typed definition (`run/record.py`): the keys code reads are the keys the "
                   "reference documents")
def test_the_typed_record_and_the_documented_keys_are_the_same_keys():
    typed = set(typing.get_type_hints(RunRecord))
    documented = [name for key in KEYS for name in key.names]
    assert len(documented) == len(set(documented)), "a key documented twice"
    assert set(documented) == typed, (sorted(set(documented) - typed), sorted(typed - set(documented)))


@pytest.mark.claim("a run.json written by an earlier engine (no `record_version`) reads as a well-formed record; a "
                   "new run writes `record_version` 2")
@pytest.mark.parametrize("path", EARLIER, ids=lambda path: path.stem)
def test_records_earlier_engines_wrote_are_well_formed(path):
    record = json.loads(path.read_text())
    assert "record_version" not in record and record["status"] == "finished"
    assert record_problems(record, path.name) == []
    known = {name for key in KEYS for name in key.names}
    assert set(record) <= known, sorted(set(record) - known)  # every key they hold is documented


def test_a_new_run_writes_the_current_record_version(trained):
    record = json.loads((trained.dir / "run.json").read_text())
    assert record["record_version"] == RUN_RECORD_VERSION == 2
    assert record_problems(record) == []


def test_wrong_types_are_one_line_each_and_a_newer_version_is_named():
    assert record_problems({"status": 3, "best_epoch": None, "nbEpoch": True, "attempts": {}}) == [
        "run.json: status: expected a string, got 3",
        "run.json: nbEpoch: expected an integer, got True",
        "run.json: attempts: expected an array, got {}"]
    assert record_problems({"record_version": 3}) == [
        "run.json: record_version: expected 1..2, got 3 (a newer engine's record: upgrade experiments_manager)"]
    assert record_problems([1]) == ["run.json: expected a JSON object, got list"]


HOSTILE = {  # tests/data/run_json/hostile/<name>.json -> the first line it is refused with
    "model_name_up_and_out": "model_name: expected a model name without '/', '..' or spaces (the model file's name "
                             "without .py), got '../../../outside/evil'",
    "model_name_absolute": "model_name: expected a model name without '/', '..' or spaces (the model file's name "
                           "without .py), got '/home/someone/evil'",
    "version_as_a_path": "exported_versions: expected an array of version numbers, got ['../..', 3]",
    "version_of_booleans": "exported_versions: expected an array of version numbers, got [True, 2]",
    "attempts_a_string": "attempts: expected an array, got 'string'",
    "attempts_of_strings": "attempts: expected an array of objects, got ['first']",
    "status_unknown": "status: expected one of running, finished, failed, interrupted, got 'zombie'",
    "newer_engine": "record_version: expected 1..2, got 9 (a newer engine's record: upgrade experiments_manager)",
    "epochs_as_text": "epochs_completed: expected an integer, got '3'",
    "not_an_object": "expected a JSON object, got list",
}


@pytest.mark.claim("a folder is data: run.json is read through one validating reader, a bad or hostile field one line "
                   "naming the file and the field, exit 2; no name read from it leads out of the folder")
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_record_is_refused_in_one_line_naming_the_field_and_nothing_is_written(name, tmp_path):
    from experiments_manager.run.discovery import read_run_info
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.utils.errors import UserInputError

    text = (REPO / "tests/data/run_json/hostile" / f"{name}.json").read_text()
    assert record_problems(json.loads(text))[0] == f"run.json: {HOSTILE[name]}"
    run = tmp_path / "colleague_run"
    run.mkdir()
    (run / "run.json").write_text(text)
    (run / "experiment_settings.py").write_text("raise SystemExit('the settings copy ran')\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/evil.py").write_text("raise SystemExit('the outside file ran')\n")
    with pytest.raises(UserInputError) as refused:
        Experiment.open(run)
    assert str(refused.value) == f"{run / 'run.json'}: {HOSTILE[name]}"
    short = {"not_an_object": "not an object", "newer_engine": "a newer engine's record"}.get(
        name, f"bad {HOSTILE[name].split(':')[0]}")
    assert read_run_info(Experiment(run)) == {"reason": f"unreadable run.json ({short})"}  # `list`'s status
    assert (run / "run.json").read_text() == text and sorted(path.name for path in tmp_path.rglob("*")) == [
        "colleague_run", "evil.py", "experiment_settings.py", "outside", "run.json"]
