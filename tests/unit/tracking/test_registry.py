"""Registered versions named as MLflow names them (experiments_manager/tracking/registry.py, models.py): a bad
models: URI, a version no run of ours registered, or one whose run is not here is one line; logged model names
MLflow accepts; which exported versions join the registered model (session.append_versions)."""

import json

import pytest

from experiments_manager.run.experiment import Experiment
from experiments_manager.tracking.models import logged_model_name
from experiments_manager.tracking.registry import RegisteredVersion, resolve, run_version
from experiments_manager.tracking.session import TrackingSession
from experiments_manager.utils.errors import UserInputError


@pytest.mark.parametrize("uri", ["models:/lab_curve", "models:/lab_curve@", "models:/lab_curve/v2", "runs:/abc/model"])
def test_a_model_uri_of_another_form_is_one_line_before_any_server(uri):
    with pytest.raises(UserInputError) as raised:
        resolve(uri, "http://127.0.0.1:9", where="--model")  # nothing listens: the form is judged first
    assert raised.value.problems == [f"--model: expected models:/NAME@ALIAS or models:/NAME/VERSION, got {uri!r}"]


def test_a_registered_version_gives_its_run_folder_here_or_one_line(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    version = RegisteredVersion("models:/m@champion", "http://x", "m", 4, "champion", "models:/m-1",
                                {"experiments_manager.folder": str(tmp_path), "export_version": "3"})
    assert run_version(version) == (tmp_path, 3)
    elsewhere = RegisteredVersion("models:/m@champion", "http://x", "m", 4, "champion", "models:/m-1",
                                  {"experiments_manager.folder": "/nowhere/run", "export_version": "3"})
    with pytest.raises(UserInputError, match=r"^RUN: models:/m@champion is version 3 of the run /nowhere/run, "
                                             r"which is not on this machine"):
        run_version(elsewhere)
    foreign = RegisteredVersion("models:/m/1", "http://x", "m", 1, None, "s3://bucket/model", {})
    with pytest.raises(UserInputError, match="was not registered by a run of experiments_manager"):
        run_version(foreign)


def test_logged_model_names_leave_out_what_mlflow_refuses():
    assert logged_model_name("my_test_nbEpoch=1_learningRate=0.01462", 2) == "my_test_nbEpoch=1_learningRate=0_01462-v2"
    assert logged_model_name("a/b:c%d\"e'f", 1) == "a_b_c_d_e_f-v1"


def test_a_version_joins_the_registered_model_only_when_it_beats_the_runs_earlier_ones(tmp_path):
    records = {"1": {"epoch": 1, "monitor": "val_loss", "value": 0.5},
               "2": {"epoch": 2, "monitor": "val_loss", "value": 0.7},  # every_epoch export: worse, not registered
               "3": {"epoch": 3, "monitor": "val_loss", "value": 0.4}}
    (tmp_path / "run.json").write_text(json.dumps({"model_name": "curve", "monitor_mode": "min", "best_epoch": 3,
                                                   "version_records": records}))
    session = TrackingSession(Experiment(tmp_path), "http://127.0.0.1:9")  # its bridge is never started
    session.append_versions()
    session.append_versions()  # nothing twice
    versions = session.outbox.versions()
    assert [(entry["version"], entry.get("registered_model")) for entry in versions] == [
        (1, "curve"), (2, None), (3, "curve")]
    assert versions[2]["path"] == "exported_models/3" and versions[2]["metrics"] == {"val_loss": 0.4}


@pytest.mark.claim("nothing from the registry is a path: a version whose source is not a logged model's id, or "
                   "numbered outside the registry's range, is one line before anything is written; names `train` "
                   "registers are names `serve` accepts", note="(the sources)")
@pytest.mark.parametrize("source", ["models:/m-../../../elsewhere", "models:/m-abc/../../x", "/etc",
                                    "file:///tmp/model", "runs:/abc/model", "models:/m-" + "a" * 65])
def test_a_registry_source_is_never_a_path(tmp_path, source):
    """A version's `source` names a logged model by id, or the download is refused in one line before any server is
    asked: a registry filled by another tool, an older server or a tampered database cannot place files."""
    from experiments_manager.tracking.registry import downloaded

    cache = tmp_path / "cache"
    version = RegisteredVersion("models:/m@champion", "http://127.0.0.1:9", "m", 4, "champion", source, {})
    with pytest.raises(UserInputError, match=r"^--model: models:/m@champion holds .*not a logged model's files "
                                             r"\(expected models:/m-<id>\)$"):
        downloaded(version, cache)
    assert not cache.exists() and sorted(path.name for path in tmp_path.iterdir()) == []


@pytest.mark.claim("nothing from the registry is a path: a version whose source is not a logged model's id, or "
                   "numbered outside the registry's range, is one line before anything is written; names `train` "
                   "registers are names `serve` accepts", note="(the version numbers)")
@pytest.mark.parametrize("uri", ["models:/lab_curve/0", f"models:/lab_curve/{2**31}", f"models:/lab_curve/{2**63}"])
def test_a_version_number_the_registry_cannot_hold_is_one_line_before_any_server(uri):
    with pytest.raises(UserInputError) as raised:
        resolve(uri, "http://127.0.0.1:9", where="--model")
    assert raised.value.problems == [f"--model: {uri} names no model version: the registry numbers them from 1 to "
                                     f"{2**31 - 1}"]


@pytest.mark.claim("nothing from the registry is a path: a version whose source is not a logged model's id, or "
                   "numbered outside the registry's range, is one line before anything is written; names `train` "
                   "registers are names `serve` accepts", note="(the names: the settings' rule is the served names')")
def test_a_registered_model_name_is_one_a_server_serves():
    from experiments_manager.run.served_layout import model_name_problem
    from experiments_manager.settings.contract import registered_model_name

    for name in ("lab curve", "lab\tcurve", "..", "a..b", "lab/curve", "lab:curve", "lab@curve", "lab%curve", ""):
        assert registered_model_name(name) is not None, name
    for name in ("lab_curve", "lab-curve.v2", "Kurve"):
        assert registered_model_name(name) is None and model_name_problem(name) is None, name


@pytest.mark.claim("tracking messages say the cause: this machine's disk, not the server; a long error's end (where the "
                   "cause is); a server's client error (a URI with a path) ends `mlflow sync` with exit 2 and its answer",
                   note="(the disk, the long error's end)")
def test_tracking_errors_name_this_machines_disk_and_keep_a_long_errors_cause(tmp_path):
    from experiments_manager.tracking.outbox import Outbox
    from experiments_manager.tracking.sender import LocalDiskFailed, _mark_sent, one_line

    cause = ("(Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
             "failed: self-signed certificate')))")
    error = OSError("HTTPSConnectionPool(host='mlflow.lab', port=443): Max retries exceeded with url: "
                    f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={'x' * 300} {cause}")
    line = one_line(error)
    assert line.endswith(cause) and line.startswith("OSError: HTTPSConnectionPool(host='mlflow.lab'") and len(line) < 420
    outbox = Outbox(tmp_path)
    outbox.sent_path.mkdir()  # a write this machine refuses: its disk's fault, not the server's
    with pytest.raises(LocalDiskFailed, match=r"^this machine's disk: .*mlflow_sent.json could not be written: Is a "
                                              r"directory$"):
        _mark_sent(outbox, {"sent_through": 1})


def test_a_version_number_of_thousands_of_digits_is_the_same_one_line():
    uri = "models:/lab_curve/" + "9" * 5000  # int() of over 4300 digits raises: refused before it
    with pytest.raises(UserInputError, match="names no model version: the registry numbers them from 1 to"):
        resolve(uri, "http://127.0.0.1:9", where="--model")
