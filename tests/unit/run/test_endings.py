"""The one table from an attempt's ending to its status and exit code (experiments_manager/run/endings.py), and
the record that the lifecycle writes from it (experiments_manager/run/lifecycle.py)."""

import errno
import signal

import pytest

from experiments_manager.run import endings, lifecycle
from experiments_manager.run.endings import EndingKind, ending_of, recorded
from experiments_manager.run.experiment import Experiment
from experiments_manager.run.record import Status
from experiments_manager.utils.environment_failures import EnvironmentFailure
from experiments_manager.utils.errors import InputStalled, UserInputError
from experiments_manager.utils.lease import LeaseHeld, LeaseLost


class TrainingInterrupted(Exception):  # as callbacks.TrainingInterrupted: a signal seen at a step's end
    signum = signal.SIGTERM


@pytest.mark.claim("one table maps how an attempt ended to its status and exit code (`run/endings.py`): finished 0, "
                   "a signal 128 + its number, the machine or the data 75, bad input 2, a failure 1; a lost lease "
                   "writes nothing")
@pytest.mark.parametrize("error, status, code", [
    (KeyboardInterrupt(), "interrupted", 130),
    (TrainingInterrupted("stopped by SIGTERM"), "interrupted", 143),
    (InputStalled("no record for 60 s"), "interrupted", 75),
    (OSError(errno.ENOSPC, "No space left on device", "/x/run.json"), "interrupted", 75),
    (EnvironmentFailure("/x: Input/output error"), "interrupted", 75),
    (LeaseHeld("another writer"), "interrupted", 75),
    (UserInputError("s.py: nbEpoch: expected an int > 0, got -3"), "failed", 2),
    (ValueError("boom"), "failed", 1),
], ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value))
def test_each_ending_has_one_status_and_exit_code(error, status, code):
    ending = ending_of(error)
    assert (ending.status, ending.exit_code) == (status, code)
    back = recorded({"status": ending.status.value, "exit_code": code})  # the table read back from run.json
    assert (back.status, back.exit_code) == (status, code)
    assert ending_of(LeaseLost("taken over")) is None


def test_a_crash_keeps_its_traceback_and_bad_input_its_line():
    try:
        raise ValueError("boom")
    except ValueError as error:
        crash = ending_of(error)
    assert crash.kind is EndingKind.FAILURE and crash.error == "ValueError: boom"
    assert "raise ValueError" in "".join(crash.traceback)
    assert ending_of(UserInputError(["a.py: x", "a.py: y"])).error == "a.py: x; a.py: y"


@pytest.mark.parametrize("ending", [endings.finished(), endings.signalled(signal.SIGUSR1, "stopped by SIGUSR1"),
                                    endings.environment_failure("disk full"), endings.bad_input("s.py: x"),
                                    endings.failed("loss became NaN"), endings.flower_stopped("flwr stop")],
                         ids=lambda ending: ending.kind.name)
def test_what_run_json_records_reads_back_as_the_same_ending(tmp_path, ending):
    experiment = Experiment(tmp_path)
    experiment.write_run_info({"status": "running", "attempts": [{"number": 1, "status": "running"}]})
    experiment.record.end(ending)
    info = experiment.run_info()
    assert info["status"] == ending.status and info["attempts"][-1]["exit_code"] == ending.exit_code
    assert ("exit_code" in info) == (ending.status == Status.INTERRUPTED)  # run.json's bytes as before
    assert recorded(info) == ending


def test_the_lifecycle_records_the_ending_nobody_recorded_and_nothing_after_a_lost_lease(tmp_path):
    experiment = Experiment(tmp_path)
    experiment.write_run_info({"status": "running", "attempts": [{"number": 1, "status": "running"}]})
    with pytest.raises(KeyError):
        with lifecycle.attempt(experiment, ["test"], console=False):
            raise KeyError("x")
    info = experiment.run_info()
    assert (info["status"], info["attempts"][-1]["exit_code"], info["error"]) == ("failed", 1, "KeyError: 'x'")
    assert not (tmp_path / "lease.json").exists()  # released

    lifecycle.resumed(experiment, ["test", "--resume"])
    with pytest.raises(LeaseLost):
        with lifecycle.attempt(experiment, ["test", "--resume"], console=False):
            raise LeaseLost("taken over")
    assert experiment.run_info()["status"] == "running"  # another writer has the folder: nothing written

    with pytest.raises(KeyError):  # an ending the code recorded stands
        with lifecycle.attempt(experiment, ["test", "--resume"], console=False):
            experiment.record.end(endings.finished())
            raise KeyError("after the end")
    assert experiment.run_info()["status"] == "finished"
