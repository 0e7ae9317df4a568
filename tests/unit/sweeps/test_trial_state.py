"""sweeps/trial_state.py and sweeps/outcomes.py: the trial-state machine, the outcome table, and how the journal holds
them (no TensorFlow, no training)."""

import json
import signal

import pytest

from experiments_manager.run.record import Status
from experiments_manager.sweeps.journal import TrialEntry, TrialJournal
from experiments_manager.sweeps.outcomes import (KILLED, LOG_ERROR, NO_VALUE, RUN_ERROR, stop_signal_of,
                                                 sweep_exit_code, trial_state_of)
from experiments_manager.sweeps.trial_state import MOVES, TrialState, state_of


def test_every_state_is_a_records_word_and_done_and_final_are_what_results_and_the_journal_read():
    assert [state.value for state in TrialState] == ["running", "paused", "promoted", "finished", "failed",
                                                     "interrupted"]
    assert {state for state in TrialState if state.done} == {TrialState.FINISHED, TrialState.FAILED, TrialState.PAUSED}
    assert {state for state in TrialState if state.final} == {TrialState.FINISHED, TrialState.FAILED}
    assert state_of("paused") is TrialState.PAUSED and state_of("zombie") is None and state_of(3) is None
    assert set(MOVES) == set(TrialState)


@pytest.mark.parametrize("before, after, allowed", [
    (TrialState.RUNNING, TrialState.FINISHED, True),  # a worker's tell
    (TrialState.RUNNING, TrialState.INTERRUPTED, True),
    (TrialState.FINISHED, TrialState.PAUSED, True),  # its value at its rung recorded, or a raised last rung
    (TrialState.PAUSED, TrialState.PROMOTED, True),
    (TrialState.PROMOTED, TrialState.RUNNING, True),
    (TrialState.INTERRUPTED, TrialState.RUNNING, True),  # taken over
    (TrialState.PAUSED, TrialState.RUNNING, False),  # a paused trial trains again only once promoted
    (TrialState.PROMOTED, TrialState.FINISHED, False),  # a promoted trial is started before it ends
    (TrialState.FAILED, TrialState.RUNNING, False),  # failed is final
    (TrialState.FINISHED, TrialState.RUNNING, False),
    (TrialState.INTERRUPTED, TrialState.PAUSED, False),
])
def test_a_record_moves_only_as_the_table_allows(tmp_path, before, after, allowed):
    journal = TrialJournal(tmp_path / "trials")
    record = journal.create(TrialEntry(hparams={"x": 1}, tid=0, status=before))
    if allowed:
        assert record.update(status=after)["status"] == after
        assert record.entry().status is after
    else:
        with pytest.raises(ValueError, match=f"a {before} trial cannot become {after}"):
            record.update(status=after)
        assert record.entry().status is before


@pytest.mark.claim("a trial's states and their moves are one enum; a record naming no state is damaged")
def test_a_record_holds_the_states_word_and_one_naming_no_state_is_damaged(tmp_path):
    journal = TrialJournal(tmp_path / "trials")
    record = journal.create(TrialEntry(hparams={"x": 1}, tid=0, status=TrialState.PAUSED))
    assert json.loads(record.path.read_text())["status"] == "paused"
    (tmp_path / "trials" / "trial-0002.json").write_text(json.dumps({"tid": 1, "status": "zombie", "hparams": {}}))
    pairs, damaged = journal.scan()
    assert [entry.status for _, entry in pairs] == [TrialState.PAUSED]
    ((bad, tid, why),) = damaged
    assert bad.path.name == "trial-0002.json" and tid == 1
    assert why == "not a trial's record: status: expected one of running, paused, promoted, finished, failed, " \
                  "interrupted, got 'zombie'"


@pytest.mark.parametrize("run_status, has_value, exit_code, state, why", [
    (Status.INTERRUPTED, False, 143, TrialState.INTERRUPTED, None),
    (Status.RUNNING, False, -signal.SIGTERM, TrialState.INTERRUPTED, None),  # killed by a stop signal
    (None, False, 128 + signal.SIGUSR1, TrialState.INTERRUPTED, None),  # stopped before its experiment existed
    (Status.RUNNING, False, 75, TrialState.INTERRUPTED, None),  # the machine (a full disk): tried again later
    (Status.FINISHED, True, -signal.SIGTERM, TrialState.FINISHED, None),  # stopped after it ended: its result stands
    (Status.FINISHED, True, 0, TrialState.FINISHED, None),
    (Status.FINISHED, False, 0, TrialState.FAILED, NO_VALUE),
    (Status.FAILED, False, 1, TrialState.FAILED, RUN_ERROR),
    (Status.FAILED, False, 75, TrialState.FAILED, RUN_ERROR),
    (Status.RUNNING, False, -signal.SIGKILL, TrialState.FAILED, KILLED),  # killed outright (out of memory?)
    (None, False, 2, TrialState.FAILED, LOG_ERROR),  # refused before it had an experiment
    ("running", False, 1, TrialState.FAILED, LOG_ERROR),  # a word, as a damaged run.json may hold
])
def test_a_trials_state_follows_its_run_and_its_exit_code(run_status, has_value, exit_code, state, why):
    assert trial_state_of(run_status, has_value, exit_code) == (state, why)


def test_the_stop_signals_are_read_from_a_death_and_from_an_exit_after_a_checkpoint():
    assert stop_signal_of(-15) == stop_signal_of(143) == signal.SIGTERM
    assert stop_signal_of(128 + signal.SIGHUP) == signal.SIGHUP and stop_signal_of(130) == signal.SIGINT
    assert stop_signal_of(-9) is None and stop_signal_of(1) is None and stop_signal_of(75) is None


@pytest.mark.parametrize("status, signum, tempfail, code", [
    (Status.FINISHED, None, False, 0), (Status.FINISHED, signal.SIGTERM, True, 0),
    (Status.FAILED, None, False, 1),
    (Status.RUNNING, None, False, 0),  # the rest runs in other workers
    (Status.RUNNING, signal.SIGTERM, False, 143), (Status.RUNNING, None, True, 75),
    (Status.INTERRUPTED, signal.SIGUSR1, False, 138), (Status.INTERRUPTED, None, False, 75),
    ("finished", None, False, 0),
])
def test_a_workers_exit_code_follows_the_sweeps_state_as_it_leaves(status, signum, tempfail, code):
    assert sweep_exit_code(status, signum, tempfail) == code
