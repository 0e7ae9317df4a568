"""The MLflow outbox of a run folder (experiments_manager/tracking/outbox.py): numbered, durable entries; a line a
crash cut short is ignored and overwritten; what was sent is not pending; damaged lines are named, and what the
outbox lost is rebuilt from the run's files (`TrackingSession.complete`)."""

import pytest

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


def _finished_run(folder, epochs=3):
    """A finished run's run.json and history.csv, as a run of `epochs` epochs exporting each leaves them."""
    import json

    records = {str(epoch): {"epoch": epoch, "monitor": "val_loss", "value": 1.0 / epoch} for epoch in range(1, epochs + 1)}
    (folder / "run.json").write_text(json.dumps({
        "model_name": "curve", "session_name": "lab", "status": "finished", "epochs_completed": epochs,
        "best_epoch": epochs, "best_value": 1.0 / epochs, "monitor_mode": "min", "monitored_loss_name": "val_loss",
        "hparams": {"lr": 0.1}, "version_records": records}))
    (folder / "history.csv").write_text("epoch,loss,val_loss\n" + "".join(
        f"{epoch},{2.0 / epoch},{1.0 / epoch}\n" for epoch in range(1, epochs + 1)))


def _kinds(outbox):
    return [(entry["kind"], entry.get("step", entry.get("version"))) for entry in outbox.entries()]


WHOLE = [("start", None), ("metrics", 1), ("metrics", 2), ("metrics", 3), ("version", 1), ("version", 2),
         ("version", 3), ("end", 3)]


def _whole_outbox(folder):
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.tracking.session import TrackingSession

    session = TrackingSession(Experiment(folder), "http://127.0.0.1:9")  # its bridge is never started
    assert session.complete().rebuilt == len(WHOLE)  # an empty outbox: everything from the run's files
    assert _kinds(session.outbox) == WHOLE
    return session


@pytest.mark.parametrize("damage", ["junk line in the middle", "random bytes at the start", "emptied",
                                    "a number out of order", "the end never appended"])
def test_a_damaged_outbox_names_its_lines_and_the_run_files_rebuild_what_it_lost(tmp_path, damage):
    """What `mlflow sync` and a resume do first: damaged lines are named and dropped, then every record the run's
    files (run.json, history.csv) give and the outbox lacks is appended once; a whole outbox gains nothing."""
    import random

    from experiments_manager.run.experiment import Experiment
    from experiments_manager.tracking.session import TrackingSession

    seed = 20261128
    print(f"seed {seed}")
    _finished_run(tmp_path)
    _whole_outbox(tmp_path)
    path = tmp_path / OUTBOX_NAME
    lines = path.read_bytes().split(b"\n")
    if damage == "junk line in the middle":
        lines[3] = b"\x00\x17not json{"
    elif damage == "random bytes at the start":
        lines[0] = random.Random(seed).randbytes(300).replace(b"\n", b"")
    elif damage == "emptied":
        lines = [b""]
    elif damage == "a number out of order":
        lines[5] = lines[1]
    else:
        lines = lines[:-2] + [b""]
    path.write_bytes(b"\n".join(lines))
    session = TrackingSession(Experiment(tmp_path), "http://127.0.0.1:9")
    expected_damage = {"junk line in the middle": [4], "random bytes at the start": [1], "a number out of order": [6]}
    assert session.outbox.damaged_lines() == expected_damage.get(damage, [])
    completion = session.complete()
    assert completion.damaged == expected_damage.get(damage, [])
    assert sorted(_kinds(session.outbox), key=WHOLE.index) == WHOLE  # each record once, in whatever order
    assert session.outbox.damaged_lines() == [] and completion.rebuilt == (1 if damage != "emptied" else len(WHOLE))
    if completion.damaged:
        assert str(completion).startswith(f"{path}: line(s) {completion.damaged[0]} damaged (not a record): left "
                                          f"out; 1 record(s) it lacked rebuilt from run.json and history.csv")
    assert session.complete().rebuilt == 0  # nothing twice
    numbers = [entry["n"] for entry in session.outbox.entries()]
    assert numbers == sorted(set(numbers))


def test_an_epoch_the_checkpoint_does_not_hold_is_not_rebuilt(tmp_path):
    """history.csv may hold an epoch whose checkpoint never became durable (a kill between the two): a resume trains
    it again, so only the epochs run.json counts as completed are records."""
    import json

    _finished_run(tmp_path)
    info = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({**info, "status": "interrupted", "epochs_completed": 2,
                                                   "version_records": {}}))
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.tracking.session import TrackingSession

    session = TrackingSession(Experiment(tmp_path), "http://127.0.0.1:9")
    session.complete()
    assert _kinds(session.outbox) == [("start", None), ("metrics", 1), ("metrics", 2), ("end", 3)]
    assert session.outbox.entries()[-1]["status"] == "KILLED"


def test_a_bit_flip_in_one_number_costs_that_line_only_and_no_number_is_reused(tmp_path):
    """A number raised by a bit flip is the damaged line (the rising run of the others is kept); a record appended
    after the damaged lines were dropped is numbered past every number seen or sent, so it is still pending."""
    outbox = Outbox(tmp_path)
    for step in range(1, 6):
        outbox.append({"kind": "metrics", "step": step, "metrics": {"loss": 1.0 / step}})
    path = tmp_path / OUTBOX_NAME
    path.write_bytes(path.read_bytes().replace(b'"n":2,', b'"n":9,'))
    assert Outbox(tmp_path).damaged_lines() == [2]
    assert [entry["step"] for entry in Outbox(tmp_path).entries()] == [1, 3, 4, 5]

    sent = Outbox(tmp_path)
    sent.mark_sent({"run_id": "abc", "sent_through": 5})
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:4] + [b"junk", b""]))  # the last, sent line damaged
    again = Outbox(tmp_path)
    again.drop_damaged()
    end = again.append({"kind": "end", "status": "FINISHED"})
    assert end["n"] == 6 and [entry["n"] for entry in again.pending()] == [6]
