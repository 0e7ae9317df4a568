"""`list` finds experiments and sweeps below a folder, skips what is not an experiment, survives foreign files."""

import json

import pytest

from experiments_manager.runs.listing import experiment_rows, format_table, select_runs


def _run(folder, **info):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"status": "finished", "epochs_completed": 2, "nbEpoch": 2,
                                                 "monitored_loss_name": "val_loss", "best_value": 0.5, **info}))


@pytest.mark.claim(
    'experiments up to 4 levels below; a folder above several working folders lists them all; hidden folders and '
    'virtualenvs skipped')
def test_list_finds_experiments_below_skips_hidden_and_venvs_and_survives_foreign_run_files(tmp_path):
    _run(tmp_path / "lab/regression/my_test_1", started="2026-11-22T10:00:00")
    _run(tmp_path / "lab/regression/my_sweep/my_test_2", started="2026-11-22T11:00:00")
    _run(tmp_path / "lab/regression/my_test_1/clients/client_0")  # a federation's client: part of its experiment
    _run(tmp_path / ".venv/lib/pkg")
    _run(tmp_path / "venv/pkg")
    _run(tmp_path / "a/b/c/d/e/too_deep")
    (tmp_path / "other_tool").mkdir()
    (tmp_path / "other_tool/run.json").write_text("[1, 2]")  # another tool's run.json
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken/run.json").write_text("{half")
    rows = experiment_rows(tmp_path)
    names = [row["experiment"] for row in rows]
    assert sorted(names) == ["broken", "lab/regression/my_sweep/my_test_2", "lab/regression/my_test_1", "other_tool"]
    assert names.index("lab/regression/my_test_1") < names.index("lab/regression/my_sweep/my_test_2")  # oldest first
    statuses = {row["experiment"]: row["status"] for row in rows}
    assert statuses["broken"].startswith("unreadable run.json") and statuses["other_tool"].startswith("unreadable")
    table = format_table(*select_runs(tmp_path))  # (no DEVICE_HOURS column: no run recorded its devices)
    assert "val_loss=0.5" in table and max(len(line) for line in table.splitlines()) < 120


def test_unreadable_run_files_get_a_plain_reason(tmp_path):
    """A damaged run.json says so in words; a read the storage failed (EIO) is not called damaged."""
    import errno
    from pathlib import Path

    _run(tmp_path / "damaged")
    (tmp_path / "damaged/run.json").write_text("{half")
    _run(tmp_path / "failing")
    real_read = Path.read_text

    def read_text(path, *args, **kwargs):  # the storage under one folder failing, as a lost brick or disk does
        if path.parent.name == "failing":
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real_read(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "read_text", read_text)
        statuses = {row["experiment"]: row["status"] for row in experiment_rows(tmp_path)}
    assert statuses == {"damaged": "unreadable run.json (not JSON)",
                        "failing": "unreadable run.json (storage error)"}


@pytest.mark.claim("`list` never shows a run killed with `kill -9` as running: `dead` (its writer provably gone), "
                   "`stalled?` (a heartbeat elsewhere two beats late)")
def test_a_running_run_whose_writer_is_gone_is_listed_dead_and_a_quiet_one_elsewhere_stalled(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time

    from experiments_manager.utils.lease_holder import Holder

    def holder(folder, **fields):
        record = Holder.of_this_process(["train"])
        for name, value in fields.items():
            setattr(record, name, value)
        (folder / "lease.json").write_text(json.dumps(record.__dict__))

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    attempt = {"host": socket.gethostname(), "pid": dead.pid}
    _run(tmp_path / "killed", status="running", attempts=[attempt])
    holder(tmp_path / "killed", pid=dead.pid)  # kill -9 left its lease behind
    _run(tmp_path / "no_lease", status="running", attempts=[attempt])
    _run(tmp_path / "alive", status="running", attempts=[{**attempt, "pid": os.getpid()}])
    holder(tmp_path / "alive")
    _run(tmp_path / "quiet_elsewhere", status="running")
    holder(tmp_path / "quiet_elsewhere", host="node-17", boot_id="b", heartbeat=time.time() - 200)
    _run(tmp_path / "busy_elsewhere", status="running")
    holder(tmp_path / "busy_elsewhere", host="node-17", boot_id="b", heartbeat=time.time() - 20)
    statuses = {row["experiment"]: row["status"] for row in experiment_rows(tmp_path)}
    assert statuses == {"killed": "dead", "no_lease": "dead", "alive": "running", "quiet_elsewhere": "stalled?",
                        "busy_elsewhere": "running"}
    from experiments_manager.runs.listing import select_runs

    assert [row["experiment"] for row in select_runs(tmp_path, status=["running"])[0]] == ["alive", "busy_elsewhere"]
    assert sorted(row["experiment"] for row in select_runs(tmp_path, status=["dead"])[0]) == ["killed", "no_lease"]


@pytest.mark.claim("`list` shows each run's `device_hours` (table, CSV, JSON)", note="(the sum, unit)")
def test_device_hours_sum_each_attempts_wall_time_times_its_devices(tmp_path):
    """Attempt 1: 1 h on 2 CPU cores; attempt 2 killed outright (no end: not counted); attempt 3: 30 min on 4 GPUs,
    of a run of 2 workers; an attempt of an older engine (no devices) counts nothing."""
    from experiments_manager.run.attempts import device_hours

    attempts = [{"started": "2026-11-26T01:00:00+00:00", "ended": "2026-11-26T02:00:00+00:00", "devices": 2},
                {"started": "2026-11-26T02:00:00+00:00", "devices": 2},
                {"started": "2026-11-26T03:00:00+01:00", "ended": "2026-11-26T02:30:00+00:00", "devices": 4},
                {"started": "2026-11-26T03:00:00+00:00", "ended": "2026-11-26T04:00:00+00:00"}]
    assert device_hours({"attempts": attempts[:1]}) == 2.0
    assert device_hours({"attempts": attempts, "workers": 2}) == 2 * (2.0 + 0.5 * 4)
    assert device_hours({"attempts": attempts[3:]}) is None
    _run(tmp_path / "a", attempts=attempts[:1])
    _run(tmp_path / "b", attempts=attempts[2:3])
    rows, columns = select_runs(tmp_path, sort=["-device_hours"])
    assert columns[-1] == "device_hours" and [row["device_hours"] for row in rows] == ["2", "2"]
    assert [row.value("device_hours") for row in select_runs(tmp_path, where=["device_hours<2.5"])[0]] == [2.0, 2.0]
