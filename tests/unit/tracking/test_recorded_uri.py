"""tracking/session.py's `recorded_tracking_uri`: the server a folder's run.json names is checked as a flag's would
be before a resume, `mlflow sync` or a recorded end sends anything there (a folder is data)."""

import json

import pytest

from experiments_manager.run.experiment import Experiment
from experiments_manager.tracking.session import recorded_tracking_uri
from experiments_manager.utils.errors import UserInputError


@pytest.mark.claim("a folder is data: run.json is read through one validating reader, a bad or hostile field one line "
                   "naming the file and the field, exit 2; no name read from it leads out of the folder",
                   note="(the MLflow server run.json names: a store's URI, which MLflow's client would write, refused)")
def test_the_server_a_run_json_names_is_checked_before_anything_is_sent(tmp_path):
    def named(uri):
        (tmp_path / "run.json").write_text(json.dumps({"status": "finished", "mlflow": {"tracking_uri": uri}}))
        return recorded_tracking_uri(Experiment(tmp_path))

    assert named("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert named(None) is None
    with pytest.raises(UserInputError) as refused:
        named("sqlite:///lab/mlflow.db")
    assert str(refused.value).startswith(f"{tmp_path / 'run.json'}: mlflow.tracking_uri: 'sqlite:///lab/mlflow.db' is "
                                         "a store, not a tracking server"), refused.value
    assert not (tmp_path / "lab").exists()
