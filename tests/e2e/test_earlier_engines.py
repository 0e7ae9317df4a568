"""Experiment folders written by earlier versions of the engine, used by this one as a researcher would.

`tests/data/earlier_engines/ec84b6e_run/` is a folder the first engine (commit ec84b6e, 2026-11-21) wrote, untouched:
`git worktree add /tmp/old ec84b6e`, then in /tmp/old `python -m experiments_manager train -u
examples/regression/mysettings_curve_fitting.py --hparam nbEpoch=2` (its TensorBoard logs and PNG left out). That
engine wrote no checksums, no attempts, no record_version, no version records and no train.log, and evaluated its
EMA weights without the warm-up, so its val_loss differs from this engine's. The run.json files of it and of three
later engines (tests/data/run_json/v1_engine_*.json) are read in tests/unit/run/test_record.py.
"""

import shutil

import numpy as np
import pytest

from conftest import REPO, read_run

FIRST_ENGINE_RUN = REPO / "tests/data/earlier_engines/ec84b6e_run"


def history(root):
    return np.genfromtxt(root / "history.csv", delimiter=",", names=True)


@pytest.mark.slow
@pytest.mark.claim("a run folder the first engine wrote resumes with this one and trains on as this engine's own run",
                   note="(`train --resume --more-epochs 1` of a 2-epoch run of ec84b6e: the same losses as this "
                        "engine's own 2-epoch run resumed alike; `list` shows it)")
def test_a_run_of_the_first_engine_resumes_and_trains_its_next_epoch_as_this_engines_own_run(workdir, run_cli):
    """`train --resume RUN --more-epochs 1` on the first engine's 2-epoch folder (its settings file's original path
    long gone): the run trains epoch 3 from its checkpoint, exports version 3 and is `finished`; its losses are those
    of this engine's own 2-epoch run of the same settings resumed the same way (the checkpoint restored the weights
    and the optimizer as this engine's own does; without `deterministic = True` a resumed run's data order starts
    over, so the baseline is a resume too, not an uninterrupted 3-epoch run); `list` shows the run."""
    old = workdir / "experiments" / "first_engine_run"
    shutil.copytree(FIRST_ENGINE_RUN, old)
    before = read_run(old)
    assert "record_version" not in before and before["epochs_completed"] == 2 and not (old / "train.log").exists()

    new = run_cli("train", "-u", "examples/regression/mysettings_curve_fitting.py", "--hparam", "nbEpoch=2")
    assert new.returncode == 0, (new.stdout + new.stderr)[-3000:]
    [own] = (workdir / "experiments/examples/curve_fitting").iterdir()
    for run in (old, own):
        result = run_cli("train", "--resume", str(run), "--more-epochs", "1")
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        info = read_run(run)
        assert info["status"] == "finished" and info["epochs_completed"] == 3, info
        assert info["exported_versions"] == [1, 2, 3] and (run / "exported_models/3/saved_model.pb").is_file()
        assert list(history(run)["epoch"].astype(int)) == [1, 2, 3]
    # epochs 1 and 2 trained by the first engine, epoch 3 by this one: the losses of this engine's own run
    np.testing.assert_allclose(history(old)["loss"], history(own)["loss"], rtol=1e-6)

    listing = run_cli("list", str(workdir / "experiments"))
    assert listing.returncode == 0, listing.stderr
    [row] = [line for line in listing.stdout.splitlines() if line.startswith("first_engine_run")]
    assert row.split()[1:3] == ["finished", "3/3"], listing.stdout
