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
