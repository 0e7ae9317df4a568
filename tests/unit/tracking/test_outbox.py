"""The MLflow outbox of a run folder (experiments_manager/tracking/outbox.py): numbered, durable entries; a line a
crash cut short is ignored and overwritten; what was sent is not pending."""

from experiments_manager.tracking.outbox import OUTBOX_NAME, Outbox


def test_entries_are_numbered_and_what_was_sent_is_not_pending(tmp_path):
    outbox = Outbox(tmp_path)
    first = outbox.append({"kind": "start", "params": {"lr": "0.1"}})
    outbox.append({"kind": "metrics", "step": 1, "metrics": {"loss": 0.5}})
    assert first["n"] == 1 and first["at"] > 0
    assert [entry["n"] for entry in outbox.pending()] == [1, 2]
    outbox.mark_sent({"run_id": "abc", "sent_through": 1})
    assert [entry["n"] for entry in outbox.pending()] == [2] and outbox.sent()["run_id"] == "abc"
    assert outbox.last_epoch() == 1


def test_a_line_a_crash_cut_short_is_ignored_then_overwritten(tmp_path):
    outbox = Outbox(tmp_path)
    outbox.append({"kind": "metrics", "step": 1, "metrics": {"loss": 0.5}})
    with open(tmp_path / OUTBOX_NAME, "ab") as handle:
        handle.write(b'{"kind":"metrics","step":2,"metr')  # killed mid-append
    assert [entry["step"] for entry in outbox.entries()] == [1]
    outbox.append({"kind": "metrics", "step": 2, "metrics": {"loss": 0.25}})
    assert [(entry["n"], entry["step"]) for entry in outbox.entries()] == [(1, 1), (2, 2)]
    assert (tmp_path / OUTBOX_NAME).read_text().count("\n") == 2


def test_a_writer_that_lost_its_folder_appends_nothing(tmp_path):
    def lost():
        raise RuntimeError("lease lost")

    outbox = Outbox(tmp_path, check_writer=lost)
    try:
        outbox.append({"kind": "start"})
    except RuntimeError:
        pass
    assert not (tmp_path / OUTBOX_NAME).exists()
