"""settings/model_file.py: what can be a model file, said in one line."""

from experiments_manager.settings.model_file import check_model_file


def test_a_run_whose_model_file_copy_is_gone_is_one_line_naming_it(tmp_path):
    """A run's copy of its model file removed (a colleague's folder, emptied by hand): one line, not a traceback."""
    copy = tmp_path / "model_curve_fitting.py"
    assert check_model_file(copy, "experiment_settings.py") == [f"{copy}: model file not found"]
    copy.write_text("def model(usersettings):\n    return None\n")
    assert check_model_file(copy, "experiment_settings.py") == []
