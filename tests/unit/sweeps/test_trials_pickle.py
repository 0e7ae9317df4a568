"""trials.pickle read as data (experiments_manager/sweeps/trials_pickle.py): what hyperopt's Trials pickles hold loads
back; a pickle that names anything else is refused before anything of it runs."""

import logging
import os
import pickle

import numpy as np
import pytest
from hyperopt import STATUS_OK, Trials, fmin, hp, tpe

from experiments_manager.sweeps.trials_pickle import add_saved_trials, check_saved_trials, save_trials


class _RunsCode:
    """What a hostile trials.pickle holds: loading it calls `os.system` (or `exec`) with the writer's command."""

    def __init__(self, call, argument):
        self.call, self.argument = call, argument

    def __reduce__(self):
        return self.call, (self.argument,)


def _fmin_trials(evals=4):
    trials = Trials()
    fmin(lambda point: {"loss": (point["x"] - 1) ** 2, "status": STATUS_OK, "best_epoch": np.int64(3)},
         {"x": hp.uniform("x", -2, 2), "width": hp.choice("width", [8, 16])}, algo=tpe.suggest, max_evals=evals,
         trials=trials, rstate=np.random.default_rng(0), show_progressbar=False)
    return trials


def test_hyperopts_own_pickle_and_the_sweeps_load_back(tmp_path, caplog):
    from experiments_manager.sweeps.journal import TrialEntry
    from experiments_manager.sweeps.sampler import hyperopt_trials
    from experiments_manager.sweeps.trial_state import TrialState

    trials = _fmin_trials()
    (tmp_path / "fmin.pickle").write_bytes(pickle.dumps(trials))  # an older engine's: fmin's Trials as it is
    save_trials(trials, tmp_path / "resaved.pickle")
    entries = [(None, TrialEntry(hparams={"x": 0.5 * tid}, tid=tid, vals={"x": [0.5 * tid]}, status=status,
                                 experiment=f"trial_{tid + 1}", loss=loss, best_value=loss, best_epoch=2, seconds=1.0,
                                 reason=None if loss is not None else "NaN loss"))
               for tid, (status, loss) in enumerate([(TrialState.FINISHED, 0.25), (TrialState.FAILED, None),
                                                     (TrialState.FINISHED, 0.5), (TrialState.PAUSED, 0.75)])]
    save_trials(hyperopt_trials(entries, with_running=False), tmp_path / "sweep.pickle")  # what a sweep writes
    with caplog.at_level(logging.WARNING, logger="experiments_manager"):
        for name, losses in (("fmin.pickle", trials.losses()), ("resaved.pickle", trials.losses()),
                             ("sweep.pickle", [0.25, None, 0.5, 0.75])):
            assert check_saved_trials(tmp_path / name, tmp_path / "trials")
            loaded = Trials()
            assert add_saved_trials(loaded, tmp_path / name, tmp_path / "trials") == 4
            assert loaded.losses() == losses, name
    assert caplog.records == []


@pytest.mark.claim("a folder is data: no pickle of it runs code; an older sweep's trials.pickle is read by an unpickler "
                   "that builds only what hyperopt's Trials holds")
@pytest.mark.parametrize("call, command", [(os.system, "touch {marker}"),
                                           (exec, "open({marker!r}, 'w').write('ran')")], ids=["os.system", "exec"])
def test_a_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path, caplog, call, command):
    marker = tmp_path / "RAN"
    hostile = tmp_path / "trials.pickle"
    hostile.write_bytes(pickle.dumps(_RunsCode(call, command.format(marker=str(marker)))))
    with caplog.at_level(logging.WARNING, logger="experiments_manager"):
        assert not check_saved_trials(hostile, tmp_path / "trials")
        assert add_saved_trials(Trials(), hostile, tmp_path / "trials") == 0
    assert not marker.exists()
    named = "posix.system" if call is os.system else "builtins.exec"
    assert [record.getMessage() for record in caplog.records] == [
        f"{hostile}: damaged, not a hyperopt Trials pickle (UnpicklingError: it names {named}, which a Trials pickle "
        f"does not hold: not loaded): rebuilt from the journal in {tmp_path / 'trials'} (finished trials are read "
        "back, not trained again)"] * 2
