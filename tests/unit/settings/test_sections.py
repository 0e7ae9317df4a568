"""The typed settings sections: one mapping from the settings file's names, the settings reference of the docs
(docs/reference/settings.md) generated from it, and every engine read of a section field checked against the
dataclasses."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments_manager.settings import sections
from experiments_manager.settings import load_settings

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.claim('the settings reference is generated from `sections.py` and checked')
def test_docs_settings_reference_is_the_generated_one():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from settings_reference import SETTINGS_PAGE, with_reference
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert SETTINGS_PAGE == ROOT / "docs/reference/settings.md"
    page = SETTINGS_PAGE.read_text()
    assert page == with_reference(page), (
        "docs/reference/settings.md's settings reference differs from experiments_manager/settings/sections.py: "
        "run `python tools/docs/gen_reference.py` (or `python tools/settings_reference.py --write`)")
    for _, _, name in sections.fields():
        assert f"| `{name}` |" in page


@pytest.mark.claim('the settings reference is generated from `sections.py` and checked')
def test_every_field_is_documented_and_its_default_passes_its_check():
    names = set()
    for section_name, field, name in sections.fields():
        assert field.metadata["doc"], f"{section_name}.{field.name}: no doc"
        assert name not in names, f"{name}: read by two fields"
        names.add(name)
        check = field.metadata["check"]
        if check is not None and not sections.is_required(field) and sections.default_of(field) is not None:
            assert check(sections.default_of(field)) is None, f"{section_name}.{field.name}: default fails its check"


@pytest.mark.claim('settings are read as typed sections (`settings.training.epochs` is `nbEpoch`)')
def test_sections_read_the_modules_names_with_defaults_and_are_frozen():
    settings = load_settings(ROOT / "examples/regression/mysettings_curve_fitting.py", {"nbEpoch": 4})
    module = settings.module
    assert settings.training.epochs == module.nbEpoch == 4
    assert settings.experiment.working_folder == module.workingFolder
    assert settings.training.get_learning_rate is module.get_learningRate
    assert settings.serving.client_io is module.Client_IO
    assert settings.kafka.enabled is False and module.consume_data_from_kafka is False  # default on both
    assert settings.export.versions_to_keep == 5
    assert sections.user_name("training", "epochs") == "nbEpoch"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.training.epochs = 3
    # an engine typo is the engine's error, not "your settings lack nbEpcoh"
    with pytest.raises(AttributeError, match="no attribute 'nbEpoch'"):
        settings.nbEpoch  # noqa: B018
    assert "mysettings_curve_fitting.py" in repr(settings)


@pytest.mark.claim('settings are read as typed sections (`settings.training.epochs` is `nbEpoch`)')
def test_every_section_field_the_engine_reads_exists():
    """`settings.<section>.<field>` anywhere in the package names a real field: an engine typo fails here, not in
    a user's run."""
    known = {(section_name, field.name) for section_name, field, _ in sections.fields()}
    reads = set()
    for path in (ROOT / "experiments_manager").rglob("*.py"):
        for section_name, field_name in re.findall(r"\bsettings\.(\w+)\.(\w+)", path.read_text()):
            if section_name in sections.SECTIONS:
                reads.add((section_name, field_name, path.name))
    unknown = sorted(read for read in reads if read[:2] not in known)
    assert not unknown, f"engine reads of fields that do not exist: {unknown}"
    assert len(reads) > 40  # the engine does read through the sections


@pytest.mark.claim('the settings reference is generated from `sections.py` and checked')
def test_settings_reference_tool_prints_the_reference():
    result = subprocess.run([sys.executable, str(ROOT / "tools/settings_reference.py")], capture_output=True,
                            text=True, check=True)
    assert result.stdout == sections.reference_markdown()
