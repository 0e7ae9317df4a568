"""Atomic writes and their leftovers: a killed writer's temporary files are removed, a live writer's kept."""

import os
import time

import pytest

from conftest import dead_pid

from experiments_manager.utils.atomic import (OLD_TEMPORARY_SECONDS, folder_replaced_atomically, remove_leftovers,
                                              replaced_atomically)


@pytest.mark.claim(
    "temporary names carry the writer's pid; a live writer's are kept")
def test_leftovers_of_dead_writers_go_and_those_of_live_ones_stay(tmp_path):
    dead, live = dead_pid(), os.getpid()
    for name in (f".run.json.{dead}.0123456789ab.tmp", f".tmp-3-{dead}", f".tmp-ckpt-000004-{dead}",
                 f".deleting-2-{dead}", f".run.json.{live}.0123456789ab.tmp", f".tmp-4-{live}"):
        (tmp_path / name).mkdir() if name.startswith((".tmp-", ".deleting-")) else (tmp_path / name).write_text("x")
    (tmp_path / f".tmp-3-{dead}" / "saved_model.pb").write_text("half")
    old = tmp_path / ".training_curves.png.abcdefabcdef.tmp"  # the name before the pid was in it
    old.write_text("x")
    os.utime(old, (time.time() - OLD_TEMPORARY_SECONDS - 5,) * 2)
    recent = tmp_path / ".history.csv.abcdefabcdef.tmp"
    recent.write_text("x")
    kept = {"run.json", ".hidden", "3"}
    for name in kept:
        (tmp_path / name).write_text("x")

    removed = remove_leftovers(tmp_path)
    assert sorted(removed) == sorted([f".run.json.{dead}.0123456789ab.tmp", f".tmp-3-{dead}", f".tmp-ckpt-000004-{dead}",
                                      f".deleting-2-{dead}", old.name])
    assert {path.name for path in tmp_path.iterdir()} == kept | {f".run.json.{live}.0123456789ab.tmp",
                                                                   f".tmp-4-{live}", recent.name}


@pytest.mark.claim('the checkpoint is written atomically after every epoch')
def test_a_failed_write_leaves_nothing_and_the_temporary_name_carries_the_pid(tmp_path):
    with replaced_atomically(tmp_path / "run.json") as tmp:
        assert tmp.name.startswith(f".run.json.{os.getpid()}.") and tmp.name.endswith(".tmp")
        tmp.write_text("{}")
    with pytest.raises(RuntimeError):
        with replaced_atomically(tmp_path / "run.json") as tmp:
            tmp.write_text("{half")
            raise RuntimeError("the writer failed")
    assert [path.name for path in tmp_path.iterdir()] == ["run.json"]
    assert (tmp_path / "run.json").read_text() == "{}"


def test_at_a_resume_leftovers_with_this_process_pid_are_a_dead_predecessors(tmp_path):
    """A restarted container often gets the pid its killed predecessor had: at a resume, before this process wrote
    anything, such names are leftovers too."""
    mine = tmp_path / f".tmp-ckpt-000002-{os.getpid()}"
    mine.mkdir()
    assert remove_leftovers(tmp_path) == [] and mine.is_dir()  # during a run: this process' own write in progress
    assert remove_leftovers(tmp_path, own_pid_is_dead=True) == [mine.name] and not mine.exists()


def test_a_folder_is_renamed_whole_or_not_at_all(tmp_path):
    stale = tmp_path / f".tmp-1-{os.getpid()}"
    stale.mkdir()
    (stale / "old.bin").write_text("a predecessor's")
    with folder_replaced_atomically(stale, tmp_path / "1") as tmp:
        tmp.mkdir()  # the stale one was removed first
        (tmp / "saved_model.pb").write_text("x")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["1"] and os.listdir(tmp_path / "1") == ["saved_model.pb"]
    with pytest.raises(OSError):
        with folder_replaced_atomically(tmp_path / f".tmp-2-{os.getpid()}", tmp_path / "2") as tmp:
            tmp.mkdir()
            raise OSError("disk full")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["1"]


class LeaseLostMeanwhile(Exception):
    pass


def test_the_commit_check_runs_once_the_new_content_is_durable_and_refusing_it_changes_nothing(tmp_path, monkeypatch):
    """A writer frozen while its temporary file or folder was fsynced (seconds on a loaded disk) and whose lease was
    taken meanwhile must not rename it into place when it wakes: `before_commit` runs after the fsync, just before the
    rename, and what it raises leaves the old file or folder and no temporary."""
    import experiments_manager.utils.atomic as atomic

    synced = []
    monkeypatch.setattr(atomic, "fsync_file", lambda path: synced.append(path.name))
    monkeypatch.setattr(atomic, "fsync_tree", lambda path: synced.append(path.name))

    def lost():
        assert synced, "checked before the new content was durable"
        raise LeaseLostMeanwhile

    (tmp_path / "training_curves.png").write_text("old")
    with pytest.raises(LeaseLostMeanwhile):
        with replaced_atomically(tmp_path / "training_curves.png", before_commit=lost) as tmp:
            tmp.write_text("new")
    assert [path.name for path in tmp_path.iterdir()] == ["training_curves.png"]
    assert (tmp_path / "training_curves.png").read_text() == "old"

    synced.clear()
    with pytest.raises(LeaseLostMeanwhile):
        with folder_replaced_atomically(tmp_path / ".tmp-ckpt-2", tmp_path / "ckpt-2", before_commit=lost) as folder:
            folder.mkdir()
            (folder / "state.json").write_text("{}")
    assert [path.name for path in tmp_path.iterdir()] == ["training_curves.png"]


def test_a_copy_onto_a_full_disk_names_the_copy_and_leaves_nothing(tmp_path):
    """shutil names the source when the destination's disk fills; the line a user reads must name the copy."""
    import errno

    from experiments_manager.utils.atomic import copy_atomically
    from real_filesystems import tmpfs

    source = tmp_path / "settings.py"
    source.write_text("# " + "x" * 200_000 + "\n")
    with tmpfs(tmp_path / "small-disk", "64k") as disk:
        with pytest.raises(OSError) as full:
            copy_atomically(source, disk / "experiment_settings.py")
        assert (full.value.errno, full.value.filename) == (errno.ENOSPC, str(disk / "experiment_settings.py"))
        assert list(disk.iterdir()) == []
