"""The type checker, as `make test` and CI run it: `mypy --strict` over the whole package with setup.cfg's [mypy]
(its three exceptions, forced by libraries without type information, are listed there), tools/image (the image
builder and the `apptainer` stand-in, not a package) and tools/claims_map.py with --strict, and the share of
functions fully annotated (tools/annotation_coverage.py). A wrong annotation, a missing one or a call that does not
match one fails here with mypy's own lines."""

import subprocess
import sys

import pytest

from conftest import REPO

mypy_api = pytest.importorskip("mypy.api", reason="mypy not installed: pip install -e '.[test]' (make test does)")


def _mypy(*arguments):
    stdout, stderr, status = mypy_api.run(["--cache-dir", str(REPO / ".mypy_cache"), *arguments])
    return status, stdout + stderr


@pytest.mark.claim(
    "the package type-checks with `mypy --strict` (setup.cfg's `[mypy]` lists its exceptions), as do `tools/image/` "
    "and `tools/claims_map.py`; at least 90 % of its functions are fully annotated "
    "(`tools/annotation_coverage.py`)")
def test_the_package_type_checks_strictly_with_setup_cfgs_settings():
    status, output = _mypy("--config-file", str(REPO / "setup.cfg"), str(REPO / "experiments_manager"))
    assert status == 0, output


@pytest.mark.claim(
    "the package type-checks with `mypy --strict` (setup.cfg's `[mypy]` lists its exceptions), as do `tools/image/` "
    "and `tools/claims_map.py`; at least 90 % of its functions are fully annotated "
    "(`tools/annotation_coverage.py`)")
def test_the_image_tools_and_the_claims_map_type_check_strictly():
    status, output = _mypy("--strict", "--ignore-missing-imports",
                           *(str(path) for path in sorted((REPO / "tools/image").glob("*.py"))),
                           str(REPO / "tools/claims_map.py"), str(REPO / "tools/annotation_coverage.py"))
    assert status == 0, output


@pytest.mark.claim(
    "the package type-checks with `mypy --strict` (setup.cfg's `[mypy]` lists its exceptions), as do `tools/image/` "
    "and `tools/claims_map.py`; at least 90 % of its functions are fully annotated "
    "(`tools/annotation_coverage.py`)")
def test_at_least_90_percent_of_the_functions_are_fully_annotated():
    run = subprocess.run([sys.executable, str(REPO / "tools/annotation_coverage.py"), "--check", "90"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1].split()[0] == "all"
