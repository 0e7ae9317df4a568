"""`sweep --resume` of a finished sweep, as a user meets it: a damaged `trials.pickle` is rebuilt from the trials'
journal with nothing retrained; a model file edited since the trials ran is refused in one line, and accepted with
--accept-code-change (the last test: it changes the shared sweep)."""

import csv
import hashlib
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest

from conftest import REGRESSION_SETTINGS, REPO, cli_env, read_run, run_command

pytestmark = pytest.mark.slow  # its module fixtures train several runs (make test-fast leaves it out)

WORKING_FOLDER = Path("experiments/examples/curve_fitting")


class _RunsCode:
    """A hostile trials.pickle's content: loading it runs `touch MARKER`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def damaged_pickle(kind: str, intact: bytes, marker: Path = Path("RAN")) -> bytes:
    """The bytes of a damaged trials.pickle.

    Args:
        kind: 'truncated' (a write cut short), 'random_bytes' (overwritten), 'wrong_type' (a valid pickle of a dict)
            or 'runs_code' (a pickle that, loaded, runs `touch marker`).
        intact: the bytes of the sweep's valid trials.pickle.
        marker: the file a 'runs_code' pickle would create (default `RAN`).

    Example:

    ```python
    (sweep / "trials.pickle").write_bytes(damaged_pickle("truncated", (sweep / "trials.pickle").read_bytes()))
    ```
    """
    if kind == "truncated":
        return intact[: len(intact) // 2]
    if kind == "random_bytes":
        return bytes((index * 97 + 13) % 256 for index in range(4096))
    if kind == "runs_code":
        return pickle.dumps(_RunsCode(marker))
    return pickle.dumps({"trials": [], "note": "not hyperopt's Trials"})


def sweep_state(workdir: Path, sweep: Path) -> dict:
    """What a retrained trial would change: every experiment's run.json, the journal's files, results.csv.

    Args:
        workdir: the test's working directory.
        sweep: the sweep folder.

    Example:

    ```python
    before = sweep_state(workdir, sweep)
    assert sweep_state(workdir, sweep) == before
    ```
    """
    experiments = sorted(path.parent for path in (workdir / WORKING_FOLDER).glob("**/run.json"))
    with open(sweep / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {"experiments": {str(path): read_run(path) for path in experiments},
            "journal": {path.name: path.read_bytes() for path in sorted((sweep / "trials").iterdir())
                        if path.suffix != ".lock"},
            "results": rows}


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """The smallest finished sweep (2 trials of 1 epoch), shared by this module's resumes: (workdir, sweep folder)."""
    workdir = tmp_path_factory.mktemp("sweep_trials_file")
    shutil.copytree(REPO / "examples", workdir / "examples")
    result = run_command(["sweep", "-u", REGRESSION_SETTINGS, "--max-evals", "2", "--seed", "11",
                          "--hparam", "nbEpoch=1"],
                         cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep,) = (workdir / WORKING_FOLDER).glob("*_sweep_*")
    return workdir, sweep


@pytest.mark.parametrize("kind", ["truncated", "random_bytes", "wrong_type", "runs_code"])
@pytest.mark.claim('a damaged trials.pickle is rebuilt from the journal, nothing retrained', note='(4 kinds)')
@pytest.mark.claim("a folder is data: no pickle of it runs code; an older sweep's trials.pickle is read by an unpickler "
                   "that builds only what hyperopt's Trials holds", note="(a pickle calling os.system: not run)")
def test_a_damaged_trials_pickle_is_rebuilt_from_the_journal_and_no_trial_is_retrained(finished_sweep, kind):
    workdir, sweep = finished_sweep
    trials_file = sweep / "trials.pickle"
    before = sweep_state(workdir, sweep)
    assert len(before["experiments"]) == 2 and len(before["results"]) == 2
    marker = workdir / "RAN"
    trials_file.write_bytes(damaged_pickle(kind, trials_file.read_bytes(), marker))

    resumed = run_command(["sweep", "--resume", str(sweep)], cwd=workdir, env=cli_env(),
                          capture_output=True, text=True, timeout=300)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "status:            finished" in resumed.stdout
    # one warning line, naming the file and saying where it is rebuilt from
    warnings = [line for line in resumed.stderr.splitlines() if "trials.pickle" in line]
    assert len(warnings) == 1, resumed.stderr
    assert str(trials_file) in warnings[0] and re.search(r"rebuilt from the .*journal", warnings[0]), warnings[0]
    assert str(sweep / "trials") in warnings[0], warnings[0]
    assert "error:" not in resumed.stderr and "Traceback" not in resumed.stderr, resumed.stderr
    assert not marker.exists(), "the pickle's code ran"
    # nothing retrained: no new experiment, every run.json, journal record and trial log as it was, same results
    assert sweep_state(workdir, sweep) == before
    # the rewritten trials.pickle is hyperopt's Trials again, with both trials' results
    from hyperopt import Trials

    with open(trials_file, "rb") as handle:
        trials = pickle.load(handle)
    assert isinstance(trials, Trials) and len(trials.trials) == 2
    assert sorted(trials.losses()) == sorted(run["best_value"] for run in before["experiments"].values())


def test_a_sweep_json_naming_an_outside_settings_file_never_runs_it(finished_sweep):
    workdir, sweep = finished_sweep
    marker, hostile = workdir / "RAN", workdir / "outside" / "evil.py"
    hostile.parent.mkdir()
    hostile.write_text(f"import os\nos.system('touch {marker}')\n")
    # sweep.json and its newest choices (what it is read with) name the hostile file, with its hash
    records = [sweep / "sweep.json", sorted((sweep / "choices").glob("*.json"))[-1]]
    intact = [record.read_bytes() for record in records]
    for record, content in zip(records, intact):
        spec = json.loads(content)
        spec.update(settings_file=str(hostile), settings_sha256=hashlib.sha256(hostile.read_bytes()).hexdigest())
        record.write_text(json.dumps(spec))
    try:
        refused = run_command(["sweep", "--resume", str(sweep), "--max-evals", "3"], cwd=workdir, env=cli_env(),
                              capture_output=True, text=True, timeout=300)
    finally:
        for record, content in zip(records, intact):
            record.write_bytes(content)
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert refused.returncode == 2 and len(errors) == 1, refused.stderr
    assert f"{sweep / 'sweep_settings.py'}: expected the settings sweep.json records" in errors[0], errors[0]
    assert not marker.exists(), "the settings file sweep.json names ran"
    assert "Traceback" not in refused.stderr


@pytest.mark.claim(
    'run.json records every attempt; the top level describes the latest; changed code is refused unless '
    '`--accept-code-change`')
def test_a_model_file_changed_since_the_trials_ran_is_refused_unless_accepted(finished_sweep):
    workdir, sweep = finished_sweep
    model_file = workdir / "examples" / "regression" / "model_curve_fitting.py"
    model_file.write_text(model_file.read_text().replace("activation='relu'", "activation='tanh'"))
    settings_file = workdir / REGRESSION_SETTINGS
    settings_file.write_text(settings_file.read_text() + "\n# edited after the sweep began\n")
    refused = run_command(["sweep", "--resume", str(sweep), "--max-evals", "3"], cwd=workdir,
                          env=cli_env(), capture_output=True, text=True, timeout=300)
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert refused.returncode == 2 and len(errors) == 1, refused.stderr
    assert f"{model_file.resolve()} (changed)" in errors[0] and "--accept-code-change" in errors[0]

    accepted = run_command(["sweep", "--resume", str(sweep), "--max-evals", "3", "--accept-code-change"],
                           cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=400)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    spec = json.loads((sweep / "sweep.json").read_text())
    assert spec["trials_done"] == 3 and spec["code"][str(model_file.resolve())] != spec["model_sha256"]
    # the third trial ran the sweep's copy, replaced by the accepted settings, as the user's file
    assert (sweep / "sweep_settings.py").read_text() == settings_file.read_text()
    third = max((read_run(path.parent)["started"], path.parent) for path in sweep.glob("*/run.json"))[1]
    assert read_run(third)["settings_file"] == str(settings_file.resolve())
    assert (third / "experiment_settings.py").read_text() == settings_file.read_text()
    again = run_command(["sweep", "--resume", str(sweep)], cwd=workdir, env=cli_env(),
                        capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr  # the accepted code is the sweep's now: nothing to refuse
