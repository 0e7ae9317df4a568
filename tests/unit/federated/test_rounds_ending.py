"""federated/apps.py `_serve_rounds`: a full disk ends a federation `interrupted` (75) with the path named, whether
a client's write met it, the server's during the rounds or the server's last version, and `federated simulate`'s
summary says so in its status line; an error that is not the machine's is left to the lifecycle."""

import errno
import logging
import os
import signal
import types

import pytest

from experiments_manager.federated import apps, federation_server
from experiments_manager.federated.entry_points import report
from experiments_manager.federated.federation_server import FederationStopped
from experiments_manager.federated.stopping import FederationInterrupted, StopRequest
from experiments_manager.run.experiment import Experiment

FULL = os.strerror(errno.ENOSPC)


class _Server:
    """What `_serve_rounds` asks of a `FederationServer`; `finish` raises `finish_error` if given."""

    def __init__(self, experiment, finish_error=None):
        self.experiment, self.first_round, self.finish_error, self.finished = experiment, 1, finish_error, 0

    def adopt_strategy(self, strategy):
        pass

    def initial_arrays(self):
        return None

    def evaluate(self, server_round, arrays):
        raise AssertionError("not reached: the strategy stands for the rounds")

    def finish(self):
        self.finished += 1
        if self.finish_error is not None:
            raise self.finish_error


def _serve(tmp_path, monkeypatch, rounds_error=None, finish_error=None, stop=None):
    """`_serve_rounds` of a federation at round 1 of 3 whose strategy raises `rounds_error` (as the server's
    evaluation writing run.json, or a round missing a client's reply, raises it) or ends; returns the experiment
    and the server."""
    class Strategy:
        def start(self, **_):
            if rounds_error is not None:
                raise rounds_error

    monkeypatch.setattr(federation_server, "supervised_strategy", lambda config, server: Strategy())
    experiment = Experiment(tmp_path)
    experiment.write_run_info({"status": "running", "rounds_completed": 1, "federated": {"rounds": 3},
                               "attempts": [{"number": 1, "status": "running"}]})
    server = _Server(experiment, finish_error)
    config = types.SimpleNamespace(rounds=3, round_timeout=30.0)
    settings = types.SimpleNamespace(training=types.SimpleNamespace(epochs=1))
    apps._serve_rounds(server, config, settings, grid=None, stop=stop)
    return experiment, server


def _full_disk_at(path):
    return OSError(errno.ENOSPC, FULL, str(path))


@pytest.mark.claim("a federation whose disk fills is recorded `interrupted` with the path it could not write, exit 75, "
                   "as a run is (a Slurm job requeues it)")
@pytest.mark.parametrize("where", ["a client's folder", "the server's run.json", "the server's last version"])
def test_a_full_disk_ends_the_federation_interrupted_75_with_the_path_named_and_the_summary_says_it(
        where, tmp_path, monkeypatch, capsys):
    if where == "a client's folder":  # its folder is in the server's: its error comes back in a round's message
        named = tmp_path
        errors = {"rounds_error": FederationStopped(
            f"round 2: 1 of 2 clients returned weights; client 1: OSError: [Errno 28] {FULL}")}
    elif where == "the server's run.json":  # a temporary file is named by its folder
        named = tmp_path
        errors = {"rounds_error": _full_disk_at(tmp_path / ".run.json.123.tmp")}
    else:
        named = tmp_path / "exported_models" / "3"
        errors = {"finish_error": _full_disk_at(named)}
    experiment, server = _serve(tmp_path, monkeypatch, **errors)
    info = experiment.run_info()
    assert (info["status"], info["attempts"][-1]["exit_code"]) == ("interrupted", 75), info
    assert info["reason"].startswith(f"{named}: {FULL}: free space"), info["reason"]
    assert server.finished == 1  # the records completed once (the last version, TensorBoard flushed)
    assert report(experiment) == 75
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("status:")]
    assert said == [f"status:            interrupted ({info['reason']})"], said


def test_a_stopped_federation_records_its_signal_first_and_a_failing_last_version_is_logged(
        tmp_path, monkeypatch, caplog):
    stop = StopRequest()
    stop.request(signal.SIGTERM)
    with caplog.at_level(logging.WARNING, logger=apps.__name__):
        experiment, server = _serve(tmp_path, monkeypatch, rounds_error=FederationInterrupted(signal.SIGTERM),
                                    finish_error=_full_disk_at(tmp_path / "exported_models" / "2"), stop=stop)
    info = experiment.run_info()
    assert (info["status"], info["attempts"][-1]["exit_code"]) == ("interrupted", 143), info
    assert server.finished == 1 and "last records could not be completed" in caplog.text


def test_an_error_that_is_not_the_machines_is_left_raised_for_the_lifecycle(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="a bug in the strategy"):
        _serve(tmp_path, monkeypatch, rounds_error=ValueError("a bug in the strategy"))
    assert Experiment(tmp_path).run_info()["status"] == "running"  # `attempt` records it, with its traceback
