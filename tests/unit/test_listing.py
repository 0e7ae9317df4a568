"""`list` finds experiments and sweeps below a folder, skips what is not an experiment, survives foreign files."""

import json

import pytest

from experiments_manager.listing import COLUMNS, experiment_rows, format_table


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
    table = format_table(rows, COLUMNS)
    assert "val_loss=0.5" in table and max(len(line) for line in table.splitlines()) < 120
