"""The Python API (`import experiments_manager as em`) beyond the notebook: settings built in Python, their
mistakes, resuming them, tab completion of the public names."""

import importlib
import subprocess
import sys
import types

import pytest

import experiments_manager as em
from experiments_manager.utils.errors import UserInputError
from experiments_manager.run.experiment import Experiment
from experiments_manager.settings import settings_from_object

MODEL_FILE = "examples/regression/model_curve_fitting.py"


def _settings_class(**changes):
    class Notebook:
        workingFolder = "experiments/api"
        session_name = "api"
        model_file = MODEL_FILE
        hparams = {"hiddenNeurons": 4}
        batch_size = 8
        nbEpoch = 1

        def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):
            raise AssertionError("not called by these tests")

        def get_learningRate():
            return 0.01

        def get_optimizer(model, loss, learning_rate):
            return None

        def get_total_loss(model):
            return "mse"

        def get_metrics(model, loss):
            return []

    for name, value in changes.items():
        setattr(Notebook, name, value)
    return Notebook


@pytest.mark.claim('the public API is listed by tab completion without importing TensorFlow')
def test_tab_completion_lists_the_public_api_without_importing_tensorflow():
    listed = dir(em)
    for name in ("train", "resume", "sweep", "resume_sweep", "serve", "load_settings", "TrainingOutcome"):
        assert name in listed
    code = "import experiments_manager as em, sys; dir(em); em.train; print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


@pytest.mark.claim('settings built as a class, module, namespace or dict')
def test_settings_from_a_class_a_namespace_or_a_dict_are_read_like_a_file(workdir):
    for source in (_settings_class(), types.SimpleNamespace(**vars(_settings_class())),
                   {name: value for name, value in vars(_settings_class()).items() if not name.startswith("__")}):
        settings = settings_from_object(source)
        assert settings.training.epochs == 1 and settings.training.ema is True  # default filled
        assert settings.module.weights_moving_averages is True  # the model file's `usersettings` sees defaults too
        assert settings.model_file.name == "model_curve_fitting.py" and not settings.from_file


@pytest.mark.claim('settings built as a class, module, namespace or dict')
def test_mistakes_in_python_settings_are_one_line_each(workdir):
    broken = _settings_class(nbEpoch=0, model_file="nowhere.py", get_metrics=lambda: [])
    with pytest.raises(UserInputError) as raised:
        settings_from_object(broken)
    problems = raised.value.problems
    assert "Notebook: nbEpoch: expected an int > 0, got 0" in problems
    assert any(line.startswith("Notebook: model_file: file 'nowhere.py' not found") for line in problems)
    assert "Notebook: get_metrics: expected a function (model, loss), got one taking ()" in problems
    with pytest.raises(UserInputError, match=r"Notebook: hparams overrides \['hiddenNeurons'\]: only for a settings"):
        em.train(_settings_class(), {"hiddenNeurons": 8})


@pytest.mark.claim('such a run resumes from Python (`em.resume(folder, settings=...)`), not from the command line')
def test_an_experiment_of_python_settings_resumes_from_python_only(workdir, run_cli):
    settings = settings_from_object(_settings_class())
    experiment = Experiment.create(settings, ["test"])
    info = experiment.run_info()
    assert info["settings_object"] == "Notebook" and info["settings_file"] is None
    assert "built in Python (Notebook)" in experiment.settings_copy.read_text()
    assert experiment.resume_hint() == f"em.resume({str(experiment.root)!r}, settings=Notebook)"
    result = run_cli("train", "--resume", str(experiment.root))
    assert result.returncode == 2
    assert (f"error: {experiment.root}: its settings were built in Python (Notebook), not read from a file: "
            "resume it from Python with em.resume(folder, settings=<the same settings>)") in result.stderr


def test_em_sweep_stays_the_function_after_the_sweep_package_is_imported():
    importlib.import_module("experiments_manager.sweeps.driver")  # what em.sweep itself imports

    assert callable(em.sweep) and em.sweep.__module__ == "experiments_manager.runs.api"
    assert callable(em.resume_sweep) and callable(em.train) and callable(em.serve)


@pytest.mark.claim('such a run resumes from Python (`em.resume(folder, settings=...)`), not from the command line')
def test_resume_refuses_settings_for_an_experiment_of_a_settings_file(workdir):
    from experiments_manager.settings import load_settings

    experiment = Experiment.create(load_settings("examples/regression/mysettings_curve_fitting.py"), ["test"])
    with pytest.raises(UserInputError, match="settings: only for an experiment whose settings were built in Python"):
        em.resume(experiment.root, settings=_settings_class())
    assert experiment.resume_hint() == f"experiments-manager train --resume {experiment.root}"


def test_an_experiment_is_created_at_a_root_given_as_a_string(workdir):
    """federated/apps.py passes the SuperLink's experiment folder as a str."""
    settings = settings_from_object(_settings_class())
    experiment = Experiment.create(settings, ["test"], root=str(workdir / "server"))
    assert (workdir / "server" / "model_curve_fitting.py").is_file() and experiment.run_info()["status"] == "running"


@pytest.mark.claim('a sweep needs a settings file')
def test_a_sweep_needs_a_settings_file(workdir):
    with pytest.raises(UserInputError, match="em.sweep: settings_file: expected the path of a settings file"):
        em.sweep(_settings_class(), 2)
