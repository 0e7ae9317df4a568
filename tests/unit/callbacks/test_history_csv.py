"""history.csv keeps every value under its own column, also when a resumed run logs columns the file lacks."""

import csv

import pytest

from experiments_manager.callbacks import HistoryCSV


def _rows(path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_a_resume_that_logs_new_columns_widens_the_header_and_keeps_every_value_in_place(tmp_path):
    """An experiment of an earlier engine version (no val_loss_raw, epochs from 0) resumed by this one."""
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,mae,val_loss,val_mae\n0,1.0,0.9,1.5,1.2\n1,0.8,0.7,1.1,1.0\n2,0.7,0.6,1.0,0.9\n")
    history = HistoryCSV(path)
    history.truncate(2)  # resuming after 2 epochs: the third is redone; the old rows are renumbered from 1
    history.on_epoch_end(2, {"loss": 0.6, "mae": 0.5, "val_loss": 0.9, "val_loss_raw": 0.95, "val_mae": 0.8,
                             "val_mae_raw": 0.85})
    history.on_epoch_end(3, {"loss": 0.5, "mae": 0.4, "val_loss": 0.8, "val_loss_raw": 0.85, "val_mae": 0.7,
                             "val_mae_raw": 0.75})
    header, rows = _rows(path)
    assert header == ["epoch", "loss", "mae", "val_loss", "val_mae", "val_loss_raw", "val_mae_raw"]
    assert [row["epoch"] for row in rows] == ["1", "2", "3", "4"]
    # old rows: renumbered, blank where nothing was logged
    assert rows[0]["loss"] == "1.0" and rows[1]["val_mae"] == "1.0" and rows[1]["val_loss_raw"] == ""
    assert rows[2]["val_mae"] == "0.8" and rows[2]["val_loss_raw"] == "0.95"
    assert rows[3] == {"epoch": "4", "loss": "0.5", "mae": "0.4", "val_loss": "0.8", "val_mae": "0.7",
                       "val_loss_raw": "0.85", "val_mae_raw": "0.75"}


@pytest.mark.claim('history.csv: one row per epoch; `val_<metric>` is the EMA weights, `val_<metric>_raw` the raw ones')
def test_a_new_file_has_epoch_first_then_sorted_columns(tmp_path):
    history = HistoryCSV(tmp_path / "history.csv")
    history.on_epoch_end(0, {"val_loss": 2.0, "loss": 1.0})
    history.on_epoch_end(1, {"val_loss": 1.5, "loss": 0.5})
    assert (tmp_path / "history.csv").read_text() == "epoch,loss,val_loss\n1,1.0,2.0\n2,0.5,1.5\n"


GOOD = "epoch,loss,val_loss\n1,1.0,2.0\n2,0.5,1.5\n3,0.4,1.2\n"


@pytest.mark.claim("history.csv: damaged rows left out with one warning; rebuilt from the checkpoint's copy")
def test_a_damaged_file_gives_its_good_rows_with_one_warning(tmp_path, caplog):
    """A cut last row (a crash mid-append), zeros (a power loss), random bytes: a resume goes on, the good rows
    kept, one warning line; a header lost altogether starts the file again."""
    path = tmp_path / "history.csv"
    history = HistoryCSV(path)
    for damaged, kept in ((GOOD + "4,0.3", 3), (GOOD + "\x00" * 40, 3), (GOOD[:30] + "\xff\xfe garbage\n" + GOOD[30:], 3),
                          ("\x00" * 80, 0)):
        path.write_bytes(damaged.encode("utf-8", errors="surrogateescape") if isinstance(damaged, str) else damaged)
        caplog.clear()
        with caplog.at_level("WARNING", logger="experiments_manager"):
            history.truncate(3)
            history.on_epoch_end(3, {"loss": 0.3, "val_loss": 1.1})
        assert len(caplog.records) == 1 and str(path) in caplog.records[0].getMessage(), damaged
        header, rows = _rows(path)
        assert [row["epoch"] for row in rows] == [str(epoch) for epoch in range(1, kept + 1)] + ["4"], damaged


@pytest.mark.claim("history.csv: damaged rows left out with one warning; rebuilt from the checkpoint's copy")
def test_a_checkpoints_copy_writes_the_file_again(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text(GOOD)
    state = HistoryCSV(path).get_state()
    path.write_bytes(b"\x00" * len(GOOD))  # what a power loss left of it
    HistoryCSV(path).set_state(state)
    assert path.read_text() == GOOD
