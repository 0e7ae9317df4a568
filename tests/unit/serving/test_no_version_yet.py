"""serving/config.py: a folder served before it has a version says where its run is: epochs for a run, rounds for a
federation's server (whose `nbEpoch` is each client's local epochs)."""

import logging
import types

import pytest

from experiments_manager.serving.config import _report_no_version_yet
from experiments_manager.utils.errors import UserInputError

FEDERATION = {"federated": {"strategy": "FedAvg", "rounds": 5}, "nbEpoch": 1}


def test_a_federation_without_a_version_is_said_in_rounds(caplog):
    server = types.SimpleNamespace(root="lab/fed_server")
    with caplog.at_level(logging.INFO, logger="experiments_manager.serving"):
        _report_no_version_yet(server, {**FEDERATION, "status": "running", "rounds_completed": 1})
    assert "(status: running, round 2 of 5)" in caplog.text and "epoch" not in caplog.text
    with pytest.raises(UserInputError, match=r"status: finished, 0 of 5 rounds done\)"):
        _report_no_version_yet(server, {**FEDERATION, "status": "finished"})


def test_a_run_without_a_version_is_said_in_epochs(caplog):
    with caplog.at_level(logging.INFO, logger="experiments_manager.serving"):
        _report_no_version_yet(types.SimpleNamespace(root="lab/run"),
                               {"status": "running", "epochs_completed": 0, "nbEpoch": 3})
    assert "(status: running, epoch 1 of 3)" in caplog.text
