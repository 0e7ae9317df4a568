"""Hparam overrides (`settings/overrides.py`): a key the settings' hparams lack is refused with the closest one,
unless it is a setting's name, the engine's, or asked for as new (`+name`); a run's recorded overrides are applied as
they were accepted; the settings' model file found in two places is named with the one not used."""

import logging
from pathlib import Path

import pytest

from conftest import REPO
from experiments_manager.settings.loader import load_settings
from experiments_manager.settings.overrides import HparamMerge, parse_hparam_overrides, split_new_hparams
from experiments_manager.settings.sections import NAMES
from experiments_manager.utils.errors import UserInputError


def merged(overrides, *dicts, strict=True):
    """The merge after each of `dicts`, the file's hparams as statements set them (each dict the hparams then)."""
    names, new = split_new_hparams(overrides)
    merge = HparamMerge(names, "mysettings.py", NAMES, new, strict)
    for hparams in dicts:
        hparams = merge(dict(hparams) if not isinstance(hparams, dict) else hparams)
    return merge


@pytest.mark.claim("an `--hparam` name the settings do not know is one line before training, with the closest "
                   "key; `+name=value` adds a new hparam", note="(in process: the merge, a typo, an abbreviation, a "
                                                                  "setting's name, `+name`)")
def test_an_unknown_hparam_is_refused_with_the_closest_key_unless_asked_for_as_new():
    merge = merged({"embed_dimm": 4, "lr": 0.1, "nbEpoch": 2}, {"embed_dim": 16, "learningRate": 0.01})
    assert merge.problems() == [
        "mysettings.py: hparams: --hparam embed_dimm=4: expected a key of the settings' hparams (embed_dim, "
        "learningRate), got 'embed_dimm' (did you mean 'embed_dim'?); a new hparam is added explicitly: --hparam "
        "+embed_dimm=... ({'+embed_dimm': ...} in Python)",
        "mysettings.py: hparams: --hparam lr=0.1: expected a key of the settings' hparams (embed_dim, learningRate), "
        "got 'lr' (did you mean 'learningRate'?); a new hparam is added explicitly: --hparam +lr=... ({'+lr': ...} in "
        "Python)"]
    assert merged({"+dropout": 0.2, "embed_dim": 8}, {"embed_dim": 16}).problems() == []
    assert merged({"procID": 1}, {"units": 3}).problems() == []  # the engine's own


def test_keys_a_file_sets_after_a_merge_are_its_own_and_recorded_overrides_are_applied_as_accepted(caplog):
    first = {"units": 3}
    merge = merged({"depth": 4}, first)
    first_merged = merge.known.copy()
    merge({**first, "depth": 2})  # `hparams['depth'] = 2` after the first merge: the file's own key
    assert "depth" not in first_merged and merge.problems() == []
    with caplog.at_level(logging.WARNING, logger="experiments_manager"):
        lenient = merged({"extra": 1}, {"units": 3}, strict=False)
    assert lenient.problems() == [] and "hparam 'extra' is not in the settings' hparams: added" in caplog.text
    assert parse_hparam_overrides(["+extra=1", "units=4"]) == {"+extra": 1, "units": 4}
    with pytest.raises(UserInputError, match="expected key=value"):
        parse_hparam_overrides(["+=1"])


def test_load_settings_refuses_an_unknown_hparam_and_adds_a_new_one():
    path = REPO / "examples/regression/mysettings_curve_fitting.py"
    with pytest.raises(UserInputError) as refused:
        load_settings(path, {"hiddenNeuron": 8})
    assert refused.value.problems[0].startswith("mysettings_curve_fitting.py: hparams: --hparam hiddenNeuron=8: ")
    assert "(did you mean 'hiddenNeurons'?)" in refused.value.problems[0]
    settings = load_settings(path, {"+dropout": 0.5, "hiddenNeurons": 8})
    assert settings.experiment.hparams["dropout"] == 0.5 and settings.overrides == {"dropout": 0.5, "hiddenNeurons": 8}


@pytest.mark.claim("`model_file` found both in the current folder and beside the settings file, differing: one "
                   "warning line says which is used and which is not")
def test_a_model_file_in_two_places_is_named_with_the_one_not_used(tmp_path, monkeypatch, caplog):
    project = tmp_path / "project"
    project.mkdir()
    settings = (REPO / "examples/regression/mysettings_curve_fitting.py").read_text().replace(
        "model_file = 'examples/regression/model_curve_fitting.py'", "model_file = 'model_curve_fitting.py'")
    (project / "settings.py").write_text(settings)
    model = (REPO / "examples/regression/model_curve_fitting.py").read_text()
    (project / "model_curve_fitting.py").write_text(model)
    (tmp_path / "model_curve_fitting.py").write_text(model + "\n# an older copy\n")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="experiments_manager"):
        loaded = load_settings(project / "settings.py")
    assert loaded.model_file == Path("model_curve_fitting.py")
    lines = [record.getMessage() for record in caplog.records if "model_file" in record.getMessage()]
    assert lines == [f"settings.py: model_file: using {tmp_path / 'model_curve_fitting.py'} (the current folder is "
                     f"looked in first); {project / 'model_curve_fitting.py'} differs and is not used (name the one "
                     "you mean with its path)"]
    (tmp_path / "model_curve_fitting.py").write_text(model)  # the same file twice: nothing to say
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="experiments_manager"):
        load_settings(project / "settings.py")
    assert "model_file" not in caplog.text


@pytest.mark.claim("a federated file's `--hparam` that is no key of its hparams, no federation key and no parameter "
                   "of its strategy is refused with the closest name")
def test_a_federated_files_overrides_are_checked_against_its_strategy():
    from experiments_manager.federated.federation_config import FederationConfig

    path = REPO / "examples/federated/mysettings_federated_curve_fitting.py"
    accepted = load_settings(path, {"federated": "FedProx", "proximal_mu": 0.1, "minEval": 1})
    config = FederationConfig.from_settings(accepted)
    assert config.strategy_parameters["proximal_mu"] == 0.1 and config.min_eval == 1
    misspelt = load_settings(path, {"federated": "FedProx", "proximal_mu": 0.1, "proximal_muu": 0.1})
    with pytest.raises(UserInputError) as refused:
        FederationConfig.from_settings(misspelt)
    assert refused.value.problems == [
        "mysettings_federated_curve_fitting.py: hparams: --hparam proximal_muu=0.1: expected a key of the settings' "
        "hparams, a federation key (federated, minCl, minFit, minEval, rounds) or a parameter of FedProx, got "
        "'proximal_muu' (did you mean 'proximal_mu'?); a new hparam is added explicitly: --hparam +proximal_muu=..."]
