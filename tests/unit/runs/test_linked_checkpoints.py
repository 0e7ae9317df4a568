"""runs/pruning.linked_checkpoints: the place outside a run's folder that `prune` removes with its checkpoints is
only the one the engine linked (run.json's `checkpoints_link`, the link leading there, named after the run)."""

import json
import os
import shutil

from experiments_manager.run.checkpoints_link import link_checkpoints
from experiments_manager.runs.pruning import linked_checkpoints


def linked_run(tmp_path):
    """A run folder whose checkpoints/ the engine linked to scratch (run.json records the place)."""
    run = tmp_path / "runs" / "my_test_2026-11-29--10-00-00"
    run.mkdir(parents=True)
    place = link_checkpoints(run / "checkpoints", tmp_path / "scratch")
    (run / "run.json").write_text(json.dumps({"status": "finished", "checkpoints_link": str(place)}))
    return run, place


def test_the_place_the_engine_linked_for_the_run_is_the_runs(tmp_path):
    run, place = linked_run(tmp_path)
    assert linked_checkpoints(run) == place


def test_a_copy_of_the_run_or_a_look_alike_never_owns_the_place(tmp_path):
    run, place = linked_run(tmp_path)
    copy = tmp_path / "backup" / run.name
    shutil.copytree(run, copy, symlinks=True)  # `cp -a`: the link and run.json as they are
    assert linked_checkpoints(copy) is None  # the original's checkpoints: only the copy's link goes
    look_alike = tmp_path / "shared" / "thesis"  # a folder made to look like a run, its link to someone's folder
    look_alike.mkdir(parents=True)
    (tmp_path / "home" / "thesis").mkdir(parents=True)
    os.symlink(tmp_path / "home" / "thesis", look_alike / "checkpoints")
    (look_alike / "run.json").write_text(json.dumps({"status": "finished",
                                                     "checkpoints_link": str(tmp_path / "home" / "thesis")}))
    assert linked_checkpoints(look_alike) is None
