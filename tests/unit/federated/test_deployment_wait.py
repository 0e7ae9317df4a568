"""How `federated run` follows its run on the SuperLink (experiments_manager/federated/deployment.py `_wait`), with
a stand-in `flwr` (a script answering `log --stream`, `ls` and `log --show` as Flower does): the rules, without a
SuperLink (test_federated_deployed.py runs them against a real one)."""

import sys

import pytest

from experiments_manager.federated import deployment

STAND_IN = '''
import json, sys
from pathlib import Path
arguments, asked = sys.argv[1:], Path(sys.argv[0]).with_name("asked")
with open(asked, "a") as handle:
    handle.write(" ".join(arguments) + "\\n")
if arguments[:1] == ["log"] and "--stream" in arguments:
    print(Path(sys.argv[0]).with_name("stream").read_text(), end="")
elif arguments[:1] == ["log"]:
    print("the whole log, asked at the end")
elif arguments[:1] == ["ls"]:
    calls = sum(line.startswith("ls ") for line in asked.read_text().splitlines())
    status = "finished:completed" if calls >= FINISHED_AT else "running"
    print(json.dumps({"runs": [{"status": status}]}))
'''


def stand_in(tmp_path, monkeypatch, stream, finished_at):
    script = tmp_path / "flwr.py"
    script.write_text(STAND_IN.replace("FINISHED_AT", str(finished_at)))
    (tmp_path / "stream").write_text(stream)
    monkeypatch.setattr(deployment, "_flwr", lambda *arguments: [sys.executable, str(script), *arguments])
    monkeypatch.setattr(deployment, "STATUS_POLL_SECONDS", 0.01)
    monkeypatch.setattr(deployment, "STREAM_CHECK_SECONDS", 0.01)
    return tmp_path / "asked"


@pytest.mark.claim("`federated run` follows its run with one log stream, not a `flwr ls` process every few seconds; "
                   "a stream that ends before the run falls back to asking")
def test_one_log_stream_follows_the_run_and_one_ls_reads_how_it_ended(tmp_path, monkeypatch):
    asked = stand_in(tmp_path, monkeypatch, "round 1\nround 2\n", finished_at=1)
    log_file = tmp_path / "flower_server.log"
    assert deployment._wait("7", "conn", {}, None, None, log_file) == "finished:completed"
    assert log_file.read_text() == "round 1\nround 2\n"  # the stream's, as it came
    assert asked.read_text().splitlines() == ["log 7 conn --stream", "ls conn --run-id 7 --format json"]


@pytest.mark.claim("`federated run` follows its run with one log stream, not a `flwr ls` process every few seconds; "
                   "a stream that ends before the run falls back to asking")
def test_a_stream_that_ends_before_the_run_falls_back_to_asking_and_writes_the_log_at_the_end(tmp_path, monkeypatch):
    asked = stand_in(tmp_path, monkeypatch, "round 1\n", finished_at=3)  # the SuperLink dropped the stream
    log_file = tmp_path / "flower_server.log"
    assert deployment._wait("7", None, {}, None, None, log_file) == "finished:completed"
    assert log_file.read_text() == "the whole log, asked at the end\n"
    calls = asked.read_text().splitlines()
    assert calls[0] == "log 7 --stream" and calls[-1] == "log 7 --show"
    assert calls[1:-1] == ["ls --run-id 7 --format json"] * 3, calls
