"""runs/pruning.linked_checkpoints: the place outside a run's folder that `prune` removes with its checkpoints is
only the one the engine linked (run.json's `checkpoints_link`, the link leading there, named after the run)."""

import json
import os

from experiments_manager.runs.pruning import linked_checkpoints


def run_linked_to(tmp_path, place, recorded=None):
    run = tmp_path / "runs" / "my_test_2026-11-29--10-00-00"
    run.mkdir(parents=True)
    place.mkdir(parents=True, exist_ok=True)
    os.symlink(place, run / "checkpoints")
    (run / "run.json").write_text(json.dumps({"status": "finished", "checkpoints_link": str(recorded or place)}))
    return run


def test_the_place_the_engine_linked_is_the_runs(tmp_path):
    run = run_linked_to(tmp_path, tmp_path / "scratch" / "my_test_2026-11-29--10-00-00_1")
    assert linked_checkpoints(run) == tmp_path / "scratch" / "my_test_2026-11-29--10-00-00_1"


def test_a_place_not_named_after_the_run_or_not_where_the_link_leads_is_never_the_runs(tmp_path):
    victim = tmp_path / "home" / "thesis"  # a hostile run.json naming someone's folder, the link made to it
    assert linked_checkpoints(run_linked_to(tmp_path / "a", victim)) is None
    place = tmp_path / "b" / "scratch" / "my_test_2026-11-29--10-00-00"
    assert linked_checkpoints(run_linked_to(tmp_path / "b", place, recorded=tmp_path / "elsewhere")) is None
