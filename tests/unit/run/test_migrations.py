"""Files of earlier engines read through one migration step per format (experiments_manager/run/migrations.py), on
stored samples of each earlier version: run.json (tests/data/run_json/), a checkpoint's state.json
(tests/data/checkpoint_state/) and history.csv (the first engine's run, tests/data/earlier_engines/)."""

import copy
import json

import pytest

from conftest import REPO
from experiments_manager.run.experiment import Experiment
from experiments_manager.run.migrations import (CHECKPOINT_STATE_STEPS, RUN_RECORD_STEPS, current_checkpoint_state,
                                                current_history_rows, current_run_record)
from experiments_manager.run.record import RUN_RECORD_VERSION, Status, record_problems
from experiments_manager.run.resume_state import CHECKPOINT_STATE_VERSION

RUN_RECORDS = sorted((REPO / "tests/data/run_json").glob("v1_*.json"))
STATES = sorted((REPO / "tests/data/checkpoint_state").glob("v1_*.json"))


def test_each_format_has_a_step_from_every_earlier_version_and_a_stored_sample_of_it():
    assert sorted(RUN_RECORD_STEPS) == list(range(1, RUN_RECORD_VERSION)) and RUN_RECORDS
    assert sorted(CHECKPOINT_STATE_STEPS) == list(range(1, CHECKPOINT_STATE_VERSION)) and STATES


@pytest.mark.claim("run.json of an earlier engine is read through one migration step (`run/migrations.py`): its "
                   "run so far becomes attempt 1, nothing is rewritten until its writer next writes")
@pytest.mark.parametrize("path", RUN_RECORDS, ids=lambda path: path.stem)
def test_a_version_1_run_json_reads_as_the_current_record(tmp_path, path):
    old = json.loads(path.read_text())
    (tmp_path / "run.json").write_text(path.read_text())
    info = Experiment(tmp_path).run_info()
    assert info["record_version"] == RUN_RECORD_VERSION and record_problems(info) == []
    attempts = info["attempts"]
    if "attempts" in old:  # kept as written
        assert attempts == old["attempts"]
    else:  # what the record says of the run so far
        (first,) = attempts
        assert (first["number"], first["command"], first["status"]) == (1, old.get("command", []), old["status"])
        assert first.get("started") == old.get("started", "")
    assert {key: value for key, value in info.items() if key not in ("attempts", "record_version")} == \
        {key: value for key, value in old.items() if key != "attempts"}  # no other key changed
    assert (tmp_path / "run.json").read_text() == path.read_text()  # read only


def test_a_current_run_json_is_read_as_it_is():
    current = {"record_version": RUN_RECORD_VERSION, "status": "running", "attempts": []}
    assert current_run_record(copy.deepcopy(current)) == current
    newer = {"record_version": RUN_RECORD_VERSION + 1, "status": "running"}
    assert current_run_record(copy.deepcopy(newer)) == newer  # record_problems names it; nothing guessed


@pytest.mark.claim("a checkpoint's state.json of an earlier engine is read through one migration step: the "
                   "exporter's state gains the fields a resume reads")
@pytest.mark.parametrize("path", STATES, ids=lambda path: path.stem)
def test_a_version_1_checkpoint_state_reads_as_the_current_state(path):
    old = json.loads(path.read_text())
    state = current_checkpoint_state(json.loads(path.read_text()))
    assert state["state_version"] == CHECKPOINT_STATE_VERSION
    assert state["epochs_completed"] == old["epochs_completed"]
    exports = state["callbacks"].get("exports")
    if exports is not None:
        assert exports["best_version"] is None
        assert (exports["requested"]["value"], exports["requested"]["best"]) == (None, False)
        assert exports["requested"]["version"] == old["callbacks"]["exports"]["requested"]["version"]
    assert state["callbacks"]["best"] == old["callbacks"]["best"]


def test_a_status_is_read_as_the_enums_member_and_an_unknown_word_is_left_for_the_check_to_name():
    read = current_run_record({"record_version": RUN_RECORD_VERSION, "status": "finished",
                               "attempts": [{"number": 1, "status": "interrupted"}, {"number": 2}]})
    assert read["status"] is Status.FINISHED and read["attempts"][0]["status"] is Status.INTERRUPTED
    assert f"{read['status']}" == "finished" and json.dumps(read["status"]) == '"finished"'  # the word, as written
    odd = current_run_record({"record_version": RUN_RECORD_VERSION, "status": "exploded"})
    assert odd["status"] == "exploded" and record_problems(odd)


def test_the_first_engines_history_csv_reads_with_epochs_from_1_and_is_left_as_it_is():
    from experiments_manager.run.history_rows import examine

    path = REPO / "tests/data/earlier_engines/ec84b6e_run/history.csv"
    before = path.read_bytes()
    header, rows, damaged = examine(path)
    assert header[0] == "epoch" and damaged == 0
    assert [row["epoch"] for row in rows] == ["1", "2"]  # written as 0, 1
    assert path.read_bytes() == before
    assert current_history_rows([{"epoch": "1"}, {"epoch": "2"}]) == [{"epoch": "1"}, {"epoch": "2"}]  # current
