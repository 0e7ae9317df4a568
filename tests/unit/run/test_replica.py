"""run/experiment.py `Experiment.replica`: the private copy a non-chief worker resumes in, taken while the chief
starts in the same folder (run.json replaced atomically, a killed writer's leftovers removed): a write in progress is
left out, and a file replaced or removed between the folder's listing and its copy is skipped."""

import json
import os
import shutil

import pytest

from experiments_manager.run.experiment import Experiment


def _chiefs_folder(root):
    """A resumable run's folder as the chief has it while starting: its run.json being replaced (its temporary file
    by the chief's pid), a checkpoint, a live lease and exports the replica leaves out."""
    (root / "checkpoints" / "ckpt-2").mkdir(parents=True)
    (root / "checkpoints" / "ckpt-2" / "weights.h5").write_bytes(b"w" * 64)
    (root / "run.json").write_text(json.dumps({"status": "interrupted", "epochs_completed": 2}))
    (root / f".run.json.{os.getpid()}.0123456789ab.tmp").write_text("{\"status\": \"runn")  # half written
    (root / "checkpoints" / f".tmp-ckpt-3-{os.getpid()}").mkdir()  # a checkpoint being written (not at a resume)
    (root / "exported_models" / "2").mkdir(parents=True)
    return Experiment(root)


def test_a_replica_leaves_out_the_writes_in_progress_and_what_is_not_shared(tmp_path):
    replica = _chiefs_folder(tmp_path / "chief").replica(tmp_path / "worker")
    copied = sorted(str(path.relative_to(replica.root)) for path in replica.root.rglob("*"))
    assert copied == ["checkpoints", "checkpoints/ckpt-2", "checkpoints/ckpt-2/weights.h5", "run.json"], copied
    assert replica.run_info()["epochs_completed"] == 2


def test_a_file_the_chief_replaces_while_it_is_copied_is_skipped(tmp_path, monkeypatch):
    chief = _chiefs_folder(tmp_path / "chief")
    (chief.root / "train.log").write_text("the chief's console\n")
    copy2 = shutil.copy2

    def renamed_away_first(source, destination, **options):  # the chief's os.replace between listing and copy
        if os.path.basename(source) == "train.log":
            os.rename(source, source + ".moved")
        return copy2(source, destination, **options)

    monkeypatch.setattr(shutil, "copy2", renamed_away_first)
    replica = chief.replica(tmp_path / "worker")
    assert not (replica.root / "train.log").exists() and (replica.root / "run.json").exists()


def test_a_copy_that_fails_for_another_reason_still_fails(tmp_path, monkeypatch):
    chief = _chiefs_folder(tmp_path / "chief")

    def full(source, destination, **options):
        raise OSError(28, "No space left on device", destination)

    monkeypatch.setattr(shutil, "copy2", full)
    with pytest.raises(shutil.Error, match="No space left on device"):
        chief.replica(tmp_path / "worker")
