"""utils/links.py: the links a folder holds, found without following them."""

import os

from experiments_manager.utils.links import first_link_at_or_below, first_link_inside, link_refusal


def test_a_link_at_any_depth_is_found_and_named_with_its_target(tmp_path):
    run = tmp_path / "run"
    (run / "logs" / "train").mkdir(parents=True)
    (run / "train.log").write_text("")
    (tmp_path / "outside").mkdir()
    assert first_link_inside(run) is None
    os.symlink(tmp_path / "outside", run / "logs" / "train" / "events")
    assert first_link_inside(run) == run / "logs" / "train" / "events"
    assert link_refusal(run / "logs" / "train" / "events") == (
        f"{run}/logs/train/events: a symbolic link (to {tmp_path}/outside) inside the folder: nothing is written "
        "through a link in a run's folder; replace it with a file or folder of its own")
    os.symlink(run, tmp_path / "linked_run")  # the folder itself may be a link: only what it holds counts
    assert first_link_inside(tmp_path / "linked_run") == tmp_path / "linked_run" / "logs" / "train" / "events"
    assert first_link_at_or_below(run / "logs") == run / "logs" / "train" / "events"
    assert first_link_at_or_below(run / "logs" / "train" / "events") == run / "logs" / "train" / "events"
    assert first_link_at_or_below(run / "evaluations") is None  # not made yet


def test_refuse_link_raises_the_refusal_line_or_nothing(tmp_path):
    import pytest

    from experiments_manager.utils.errors import UserInputError
    from experiments_manager.utils.links import refuse_link

    refuse_link(None)
    os.symlink(tmp_path / "elsewhere", tmp_path / "train.log")
    with pytest.raises(UserInputError) as refused:
        refuse_link(tmp_path / "train.log")
    assert str(refused.value) == link_refusal(tmp_path / "train.log")


def test_the_folders_own_link_is_looked_through_only_while_it_leads_where_recorded(tmp_path):
    run, scratch = tmp_path / "run", tmp_path / "scratch" / "run"
    run.mkdir()
    (scratch / "ckpt-000001").mkdir(parents=True)
    os.symlink(scratch, run / "checkpoints")
    own = {run / "checkpoints": str(scratch)}
    assert first_link_inside(run) == run / "checkpoints"  # not the folder's own: refused as any link
    assert first_link_inside(run, own) is None
    os.symlink(tmp_path / "victim.txt", scratch / "ckpt-000001" / "state.json")  # a link in the place: found
    assert first_link_inside(run, own) == run / "checkpoints" / "ckpt-000001" / "state.json"
    os.unlink(scratch / "ckpt-000001" / "state.json")
    os.unlink(run / "checkpoints")
    os.symlink(tmp_path / "elsewhere", run / "checkpoints")  # retargeted: found
    assert first_link_inside(run, own) == run / "checkpoints"
