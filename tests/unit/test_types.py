"""The type checker, as `make test` and CI run it: mypy over the package with setup.cfg's [mypy] sections (every
annotated function checked; experiments_manager.utils strict), and tools/image (the image builder and the
`apptainer` stand-in, not a package) with --strict. A wrong annotation or a call that does not match one fails here
with mypy's own lines."""

import pytest

from conftest import REPO

mypy_api = pytest.importorskip("mypy.api", reason="mypy not installed: pip install -e '.[test]' (make test does)")


def _mypy(*arguments):
    stdout, stderr, status = mypy_api.run(["--cache-dir", str(REPO / ".mypy_cache"), *arguments])
    return status, stdout + stderr


@pytest.mark.claim(
    "the package type-checks with mypy (setup.cfg's `[mypy]`; `experiments_manager.utils` and `tools/image/` "
    'strict)')
def test_the_package_type_checks_with_setup_cfgs_settings():
    status, output = _mypy("--config-file", str(REPO / "setup.cfg"), str(REPO / "experiments_manager"))
    assert status == 0, output


@pytest.mark.claim(
    "the package type-checks with mypy (setup.cfg's `[mypy]`; `experiments_manager.utils` and `tools/image/` "
    'strict)')
def test_the_image_tools_and_the_claims_map_type_check_strictly():
    status, output = _mypy("--strict", "--ignore-missing-imports",
                           *(str(path) for path in sorted((REPO / "tools/image").glob("*.py"))),
                           str(REPO / "tools/claims_map.py"))
    assert status == 0, output
