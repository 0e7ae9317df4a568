"""The code an attempt records (`run/attempts.py`): the user's modules, never experiments_manager's own files, and
what a resume calls a change."""

import importlib
import sys

import pytest

from experiments_manager.run.attempts import ENGINE_FOLDER, code_changes, code_identity, user_modules


@pytest.mark.claim("The tool's own files are never a run's code: updating experiments_manager (an editable install) "
                   "is no code change at a resume",
                   note="(every subpackage's module left out of what an attempt records; a file an earlier "
                        "engine recorded from another install of it ignored; the user's edited helper still named)")
def test_the_engines_files_are_not_the_runs_code_and_a_users_edit_is(tmp_path, monkeypatch):
    importlib.import_module("experiments_manager.export.saved_state")  # a module of another subpackage
    (tmp_path / "lab_helpers_for_test.py").write_text("SCALE = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("lab_helpers_for_test")
    try:
        found = user_modules()
    finally:
        sys.modules.pop("lab_helpers_for_test", None)
    assert not [path for path in found if path.is_relative_to(ENGINE_FOLDER)]
    assert tmp_path.resolve() / "lab_helpers_for_test.py" in found

    recorded = code_identity([tmp_path / "lab_helpers_for_test.py"], tmp_path / "experiment")
    recorded[str(ENGINE_FOLDER / "run" / "attempts.py")] = "0" * 64  # an earlier engine's own file, updated since
    recorded["/opt/old-install/experiments_manager/export/exporter.py"] = "1" * 64
    assert code_changes(recorded, tmp_path / "experiment") == []
    (tmp_path / "lab_helpers_for_test.py").write_text("SCALE = 3\n")
    assert code_changes(recorded, tmp_path / "experiment") == [f"{tmp_path.resolve()}/lab_helpers_for_test.py (changed)"]
