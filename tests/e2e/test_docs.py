"""The documentation site: its generated reference pages are the committed ones, and `mkdocs build --strict` builds
it (a broken link or anchor, or a page missing from mkdocs.yml's nav, fails) with the pages and generated content
it should have."""

import importlib.util
import json
import os
import subprocess
import sys

from conftest import REPO, require_real_part

GENERATED_CHECK = """
import json, sys
sys.path.insert(0, sys.argv[1])
import gen_reference
stale = [str(path) for path, text in gen_reference.pages().items() if path.read_text() != text]
print(json.dumps({"stale": stale, "tensorflow": "tensorflow" in sys.modules}))
"""

PAGES = [
    "index.html",
    "tutorial/quick-start/index.html",
    "tutorial/regression/index.html",
    "tutorial/notebook/index.html",
    *(f"how-to/{name}/index.html" for name in (
        "settings-file", "text-and-multi-input-models", "own-training-loops", "extra-packages", "keras2", "resume",
        "manage-runs", "evaluate", "serving", "edge", "kafka", "federated", "sweeps", "mlflow", "slurm", "apptainer",
        "multi-worker")),
    *(f"reference/{name}/index.html" for name in ("settings", "cli", "run-json", "folder-layout", "tensorboard",
                                                  "api")),
    "architecture/index.html",
    "explanation/ema/index.html",
    "explanation/background-exports/index.html",
    "explanation/shared-file-systems/index.html",
    "explanation/security/index.html",
    "explanation/costs/index.html",
    "development/index.html",
]


def test_the_committed_reference_pages_are_the_generated_ones():
    """docs/reference/cli.md (every command's --help) and the settings tables, generated without TensorFlow."""
    result = subprocess.run([sys.executable, "-c", GENERATED_CHECK, str(REPO / "tools" / "docs")],
                            capture_output=True, text=True, cwd=REPO, check=True)
    report = json.loads(result.stdout)
    assert report["stale"] == [], (
        f"{report['stale']}: differ from the generated text; run `python tools/docs/gen_reference.py`")
    assert report["tensorflow"] is False  # --help stays fast: the parsers import no TensorFlow
    cli_page = (REPO / "docs/reference/cli.md").read_text()
    from experiments_manager import commands
    for name in commands.NAMES:
        assert f"\n## {name}\n" in cli_page and f"usage: experiments-manager {name} " in cli_page, name
    for mode in ("simulate", "run", "superlink", "supernode"):
        assert f"\n### federated {mode}\n" in cli_page, mode


def test_the_site_builds_strictly_with_every_page(tmp_path):
    missing = [module for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers")
               if importlib.util.find_spec(module) is None]  # mkdocs, mkdocs-material, mkdocstrings[python]
    require_real_part(f"the docs extra is not installed (no {', '.join(missing)}): pip install -e '.[docs]'"
                      if missing else None)
    site = tmp_path / "site"
    # no --quiet: mkdocs counts the warnings strict mode fails on only when they are logged
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(REPO / "mkdocs.yml"), "--site-dir", str(site)],
                            capture_output=True, text=True, cwd=REPO, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert not warnings, warnings
    built = sorted(str(path.relative_to(site)) for path in site.rglob("index.html") if "assets" not in path.parts)
    assert sorted(PAGES) == built, f"pages: {built}"

    def page(name):
        return (site / name / "index.html").read_text()

    settings = page("reference/settings")
    for name in ("nbEpoch", "get_input_pipeline", "ema_warmup", "hyperopt_space"):
        assert f"<code>{name}</code>" in settings, name
    cli = page("reference/cli")
    assert "usage: experiments-manager train" in cli and "--usersettings" in cli and "--more-epochs" in cli
    api = page("reference/api")
    for function in ("train", "resume", "sweep", "serve", "load", "evaluate"):
        assert f'id="experiments_manager.runs.api.{function}"' in api, function
    assert "Trains a new experiment" in api  # train's docstring, rendered by mkdocstrings
    assert "TrainingOutcome" in api and "list_runs" in api
    quick_start = page("tutorial/quick-start")  # README.md's quick start, included by pymdownx.snippets
    assert "myproject/settings.py" in quick_start and "get_served_module" in quick_start and "8&lt;" not in quick_start
    tutorial = page("tutorial/regression")
    assert "1. Train" in tutorial and "mysettings_curve_fitting.py" in tutorial
    assert "generate" in page("reference/run-json") and "<code>attempts</code>" in page("reference/run-json")
    assert "Data flow" in page("architecture")
