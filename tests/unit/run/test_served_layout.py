"""The served-model layout (`served_layout.py`): one rule each for version folders, the folders of versions being
written or moved aside, models.config, model names and the default ports, read alike by the exporter, the servers and
the settings loader."""

import ast
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, dead_pid, settings_variant
from experiments_manager.run import served_layout
from experiments_manager.run.served_layout import (DAMAGED, DEFAULT_GRPC_PORT, DEFAULT_REST_PORT, DISCARDED, ModelSource,
                                               check_model_name, in_progress_folder_name,
                                               model_name_problem, models_config_text, present_versions,
                                               set_aside_folder_name, set_aside_version, sources_from_config_file,
                                               version_of)
from experiments_manager.utils.errors import UserInputError

VERSIONS = {"1": 1, "12": 12, "0": 0, "007": 7}  # what every copy of the rule accepted before it was one
NOT_VERSIONS = ["1.tmp", "abc", "", ".tmp-3-1234", ".deleting-3-1234", "damaged-3", "discarded-3-1", "-1", "+1", " 1",
                "1 ", "1\n", "1e3", "²", "٣"]  # the last two passed str.isdigit(), '٣' passed \d (int('²') raises)
GOOD_NAMES = ["model_curve_fitting", "lab.exp", "sweeps.lr_sweep.trial_lr=0.01", "a-b_c", "modèle"]
BAD_NAMES = ["", "my model", "a/b", "..", "a..b", "../etc", "tab\tname", "new\nline"]
SPACED_MODEL_ERROR = ("spaced.py: model_file: 'my model.py' names the served model: expected a model name without '/', "
                      "'..' or spaces, got 'my model'")


@pytest.mark.parametrize("name, version", sorted(VERSIONS.items()))
@pytest.mark.claim(
    'a version folder is named by its number in ASCII digits; folders being written, removed, moved aside or with '
    'other digits are not versions, for the exporter, the server and run.json alike')
def test_a_version_folder_is_named_by_its_number_in_ascii_digits(name, version):
    assert version_of(name) == version


@pytest.mark.parametrize("name", NOT_VERSIONS)
@pytest.mark.claim(
    'a version folder is named by its number in ASCII digits; folders being written, removed, moved aside or with '
    'other digits are not versions, for the exporter, the server and run.json alike')
def test_other_names_are_not_versions(name):
    assert version_of(name) is None


def test_present_versions_are_the_folders_named_as_versions_oldest_first(tmp_path):
    for name in ["12", "1", "3", ".tmp-4-123", "damaged-2", "discarded-5-1", "abc", "²"]:
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert present_versions(tmp_path) == [1, 3, 12]
    assert present_versions(tmp_path / "missing") == []


@pytest.mark.claim(
    'a version folder is named by its number in ASCII digits; folders being written, removed, moved aside or with '
    'other digits are not versions, for the exporter, the server and run.json alike')
def test_the_exporter_the_server_and_run_json_agree_on_which_names_are_versions(tmp_path):
    """One rule, three readers: the exporter's numbering (`present_versions`), the server's poll of a base path and
    run.json's `version_records` keys ('²' used to pass str.isdigit() there, then fail int())."""
    from experiments_manager.serving.versions import VersionManager
    from experiments_manager.run.version_records import records_of

    for name in ["2", "10", in_progress_folder_name(11, pid=99), set_aside_folder_name(DAMAGED, 3), "²", "x"]:
        (tmp_path / name).mkdir()
    source = ModelSource("m", tmp_path)
    listed, ready = VersionManager([source], poll_seconds=0)._list_versions(source)
    assert listed == set(present_versions(tmp_path)) == {2, 10}
    assert ready == set()  # no saved_model.pb in them yet
    record = {"epoch": 1}
    assert records_of({"version_records": {"2": record, "²": record, "x": record, "10": record}}) == {2: record,
                                                                                                    10: record}


@pytest.mark.claim(
    "a version being written is hidden and carries its writer's pid; a killed exporter's is removed, a live one's "
    'kept; a version moved aside keeps its number out of use')
def test_a_version_being_written_is_hidden_and_carries_its_writers_pid(tmp_path):
    assert in_progress_folder_name(3, pid=1234) == ".tmp-3-1234"
    assert in_progress_folder_name(3) == f".tmp-3-{os.getpid()}"
    assert in_progress_folder_name(3).startswith(".")  # model servers skip dot-prefixed folders
    assert version_of(in_progress_folder_name(3)) is None


@pytest.mark.claim(
    "a version being written is hidden and carries its writer's pid; a killed exporter's is removed, a live one's "
    'kept; a version moved aside keeps its number out of use')
def test_what_a_killed_exporter_left_is_removed_and_a_live_ones_is_kept(tmp_path):
    """`utils.atomic.remove_leftovers` (its own pattern of temporary names) recognises the layout's name."""
    from experiments_manager.utils.atomic import remove_leftovers

    dead = tmp_path / in_progress_folder_name(4, pid=dead_pid())
    live = tmp_path / in_progress_folder_name(5)
    for folder in (dead, live, tmp_path / "3"):
        folder.mkdir()
    assert remove_leftovers(tmp_path) == [dead.name]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["3", live.name])


@pytest.mark.claim(
    "a version being written is hidden and carries its writer's pid; a killed exporter's is removed, a live one's "
    'kept; a version moved aside keeps its number out of use')
def test_a_version_moved_aside_keeps_its_number_out_of_use(tmp_path):
    from experiments_manager.utils.checksums import set_aside

    assert set_aside_folder_name(DAMAGED, 3) == "damaged-3"
    assert set_aside_folder_name(DISCARDED, 4) == "discarded-4"
    with pytest.raises(ValueError, match="reason: expected 'damaged' or 'discarded', got 'broken'"):
        set_aside_folder_name("broken", 3)
    for name, version in [("damaged-3", 3), ("discarded-4", 4), ("damaged-3-1", 3), ("damaged-ckpt-3", None),
                          ("damaged-", None), ("3", None), ("damaged-3-x", None)]:
        assert set_aside_version(name) == version, name
    assert version_of(set_aside_folder_name(DAMAGED, 3)) is None
    for _ in range(2):  # the second one aside takes a suffix: still version 3's
        (tmp_path / "3").mkdir()
        moved = set_aside(tmp_path / "3", set_aside_folder_name(DAMAGED, 3), "damaged (test)")
        assert set_aside_version(moved.name) == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == ["damaged-3", "damaged-3-1"]


@pytest.mark.claim(
    'models.config text reads back as the same sources; a bad one is one line naming it; neither imports TensorFlow')
def test_models_config_text_reads_back_as_the_same_sources(tmp_path):
    sources = [ModelSource("a", tmp_path / "a" / "exported_models"),
               ModelSource("b", tmp_path / "b", policy="all"),
               ModelSource("c", tmp_path / "c", policy="specific", versions=(1, 3)),
               ModelSource("lab.d", tmp_path / "d", num_versions=2, labels=(("canary", 4), ("stable", 3)))]
    config = tmp_path / "models.config"
    text = models_config_text(sources)
    assert 'model_platform: "tensorflow"' in text and f'base_path: "{(tmp_path / "b").resolve()}"' in text
    config.write_text(text)
    assert sources_from_config_file(config) == [
        dataclasses.replace(source, base_path=Path(source.base_path).resolve()) for source in sources]


def test_a_relative_base_path_is_the_config_files_folders(tmp_path):
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "m" base_path: "exp/exported_models" } }\n')
    assert sources_from_config_file(config) == [ModelSource("m", tmp_path / "exp/exported_models")]


@pytest.mark.parametrize("text, problem", [
    ('model_config_list { config { name: "my model" base_path: "/x" } }', "name: expected a model name without '/', "
                                                                          "'..' or spaces, got 'my model'"),
    ('model_config_list { config { name: "m" base_path: "/x" } config { name: "m" base_path: "/y" } }',
     "name: expected unique model names, got ['m'] twice"),
    (models_config_text([]), "model_config_list: expected at least one config { name base_path }"),
    ('model_config_list { config { name: "m" } }', "base_path: expected a folder for model 'm'"),
    ("not a config", "expected a ModelServerConfig text proto: "),
])
@pytest.mark.claim(
    'models.config text reads back as the same sources; a bad one is one line naming it; neither imports TensorFlow')
def test_a_bad_models_config_is_one_line_naming_it(tmp_path, text, problem):
    config = tmp_path / "models.config"
    config.write_text(text)
    with pytest.raises(UserInputError) as caught:
        sources_from_config_file(config)
    assert len(caught.value.problems) == 1 and caught.value.problems[0].startswith(f"{config}: {problem}")


@pytest.mark.claim(
    'models.config text reads back as the same sources; a bad one is one line naming it; neither imports TensorFlow')
def test_the_layout_never_imports_tensorflow():
    """Building and parsing a models.config use tensorflow-serving-api's protos only (the exporter's process may
    import TensorFlow; a lighter reader of the layout must not have to)."""
    code = ("import sys, tempfile, pathlib\n"
            "from experiments_manager.run.served_layout import ModelSource, models_config_text, sources_from_config_file\n"
            "path = pathlib.Path(tempfile.mkdtemp()) / 'models.config'\n"
            "path.write_text(models_config_text([ModelSource('m', path.parent)]))\n"
            "assert sources_from_config_file(path)[0].name == 'm'\n"
            "print(sorted(name for name in sys.modules if name.split('.')[0] in ('tensorflow', 'keras')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_model_names_pass_the_one_rule(name):
    assert model_name_problem(name) is None
    assert check_model_name(name, "models.config") is None


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.claim('one model-name rule (no `/`, `..` or whitespace) and one definition of the default ports')
def test_bad_model_names_fail_the_one_rule(name):
    assert model_name_problem(name) == f"expected a model name without '/', '..' or spaces, got {name!r}"
    with pytest.raises(UserInputError) as caught:
        check_model_name(name, "lab/models.config")
    assert caught.value.problems == [f"lab/models.config: name: {model_name_problem(name)}"]


def test_the_servers_use_the_layouts_rules_not_copies():
    """What serving/config.py offered is the layout's own (re-exported): one definition each."""
    from experiments_manager.serving import config

    for name in ("ModelSource", "check_model_name", "sources_from_config_file"):
        assert getattr(config, name) is getattr(served_layout, name), name


@pytest.mark.claim('one model-name rule (no `/`, `..` or whitespace) and one definition of the default ports')
def test_the_default_ports_are_defined_once():
    """The settings' default gRPC port, the server's defaults and the command line's are the layout's; no module but
    the layout writes 8500 or 8501 in its code (docstrings and examples aside)."""
    from experiments_manager.serving.server import ServerOptions
    from experiments_manager.settings import contract, sections

    assert (DEFAULT_GRPC_PORT, DEFAULT_REST_PORT) == (8500, 8501)
    assert (contract.DEFAULT_GRPC_PORT, contract.DEFAULT_REST_PORT) == (DEFAULT_GRPC_PORT, DEFAULT_REST_PORT)
    assert (ServerOptions().grpc_port, ServerOptions().rest_port) == (DEFAULT_GRPC_PORT, DEFAULT_REST_PORT)
    port_field = next(field for field in dataclasses.fields(sections.ServingSection) if field.name == "port")
    assert sections.default_of(port_field) == DEFAULT_GRPC_PORT
    written = []
    for path in sorted((REPO / "experiments_manager").rglob("*.py")):
        if path.name == "served_layout.py" and path.parent.name == "run":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and type(node.value) is int and node.value in (8500, 8501):
                written.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert written == []


def _model_files_named_by_settings():
    """(settings file, model file named in it) of every settings file of examples/ and tests/data/, the notebook's
    settings class included."""
    named = []
    for path in sorted([*(REPO / "examples").rglob("*.py"), *(REPO / "tests" / "data").rglob("*.py"),
                        *(REPO / "examples").rglob("*.ipynb")]):
        for value in re.findall(r"""model_file\s*=.*?['"]([^'"\\]+\.py)['"]""", path.read_text()):
            named.append((path.relative_to(REPO), value))
    return named


@pytest.mark.claim('one model-name rule (no `/`, `..` or whitespace) and one definition of the default ports')
def test_every_example_and_test_settings_file_names_a_servable_model():
    named = _model_files_named_by_settings()
    assert len(named) >= 10, named  # the scan found them
    assert [(settings, model) for settings, model in named if model_name_problem(Path(model).stem)] == []


@pytest.mark.claim(
    'a model file whose name cannot be served (`my model.py`) is refused when the settings load: `train` exits 2 '
    'with one line, no experiment folder')
def test_a_model_file_whose_name_cannot_be_served_is_refused_when_the_settings_load(workdir):
    """`my model.py` used to train and export, then fail at serve time; the loader now says so, in one line naming the
    settings file, the model file and the rule; the same file under a good name loads."""
    from experiments_manager.settings import load_settings

    model = workdir / "examples/regression/model_curve_fitting.py"
    shutil.copy(model, model.with_name("my model.py"))
    shutil.copy(model, model.with_name("my_model.py"))
    spaced = settings_variant(workdir, "spaced.py", ["model_file = 'examples/regression/my model.py'"])
    with pytest.raises(UserInputError) as caught:
        load_settings(spaced)
    assert caught.value.problems == [SPACED_MODEL_ERROR]
    good = settings_variant(workdir, "good.py", ["model_file = 'examples/regression/my_model.py'"])
    assert load_settings(good).model_name == "my_model"


@pytest.mark.claim(
    'a model file whose name cannot be served (`my model.py`) is refused when the settings load: `train` exits 2 '
    'with one line, no experiment folder')
def test_train_exits_2_with_one_line_for_a_model_file_that_cannot_be_served(workdir, run_cli):
    model = workdir / "examples/regression/model_curve_fitting.py"
    shutil.copy(model, model.with_name("my model.py"))
    spaced = settings_variant(workdir, "spaced.py", ["model_file = 'examples/regression/my model.py'"])
    result = run_cli("train", "-u", str(spaced))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: {SPACED_MODEL_ERROR}"]
    working_folder = workdir / "experiments/examples/curve_fitting"
    assert not working_folder.exists() or not any(working_folder.iterdir())  # nothing trained, nothing exported
