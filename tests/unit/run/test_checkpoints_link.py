"""run/checkpoints_link.py: `checkpoints/` on other storage, made durably, followed only while it leads where
run.json says, and a place gone said in one line."""

import os
import shutil

import pytest

from experiments_manager.run.checkpoints_link import link_checkpoints, own_links, refuse_links, refuse_lost_checkpoints
from experiments_manager.utils.errors import UserInputError


def test_the_place_is_named_after_the_run_and_the_link_leads_there(tmp_path):
    scratch = tmp_path / "scratch"
    runs = [tmp_path / "a" / "my_run", tmp_path / "b" / "my_run"]  # two working folders, one run name
    places = []
    for run in runs:
        run.mkdir(parents=True)
        places.append(link_checkpoints(run / "checkpoints", scratch))
    assert places == [scratch / "my_run", scratch / "my_run_1"]
    assert [os.readlink(run / "checkpoints") for run in runs] == [str(place) for place in places]
    refuse_links(runs[0], own_links(runs[0] / "checkpoints", {"checkpoints_link": str(places[0])}))  # its own


def test_a_link_leading_elsewhere_or_to_a_place_gone_is_refused_in_one_line(tmp_path):
    run = tmp_path / "my_run"
    run.mkdir()
    place = link_checkpoints(run / "checkpoints", tmp_path / "scratch")
    with pytest.raises(UserInputError, match="a symbolic link"):
        refuse_links(run, own_links(run / "checkpoints", {"checkpoints_link": str(tmp_path / "other")}))
    refuse_lost_checkpoints(run / "checkpoints", run)  # (there)
    shutil.rmtree(place)  # the scratch storage purged
    refuse_links(run, own_links(run / "checkpoints", {"checkpoints_link": str(place)}))  # a writer may go on
    (problem,) = pytest.raises(UserInputError, refuse_lost_checkpoints, run / "checkpoints", run).value.problems
    assert problem.startswith(f"{run / 'checkpoints'}: leads to {place}, which is gone (scratch storage purged?)")
    assert problem.endswith(f"train -u SETTINGS --init-from {run}")
