"""Start-up as a user sees it: the experiment folder is the first line, before TensorFlow has loaded; TensorFlow's
native start-up noise is gone and real errors still show; a run stopped before training leaves no folder."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REGRESSION_SETTINGS, cli_command, cli_env, read_run, wait_for
from experiments_manager.run.reservation import (MARKER_NAME, NOT_LITERAL, FolderReservation,
                                                     literal_assignments)
from experiments_manager.utils.native_noise import NOISE, is_noise

ABSL_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")  # TensorFlow's native log format
LOADED = "settings file: tensorflow imported"


def _settings_with(workdir, name, top_lines=(), bottom_lines=()):
    """The regression example with lines inserted before and after its body (its own literal names kept)."""
    source = (workdir / REGRESSION_SETTINGS).read_text()
    path = workdir / name
    path.write_text("\n".join([*top_lines, source, *bottom_lines]) + "\n")
    return path


def _lines(process):
    output, _ = process.communicate(timeout=300)
    return output.splitlines()


@pytest.mark.slow
@pytest.mark.claim(
    'the first line, at once, is `Experiment folder: ...`, before the settings file (and TensorFlow) is loaded; '
    'the closing report names the same folder',
    note='(a settings file printing after `import tensorflow`)')
@pytest.mark.claim("TensorFlow's native start-up lines are kept off the terminal; any other line shows")
def test_train_says_its_folder_first_and_prints_no_native_noise(workdir):
    """The first line names the folder, before the settings file (which imports TensorFlow) runs; no absl line
    and no "failed call to cuInit" on this GPU-less machine; the folder named is the one trained in."""
    settings = _settings_with(workdir, "mysettings_loud.py",
                              top_lines=["import tensorflow", f"print({LOADED!r}, flush=True)"])
    process = subprocess.Popen(cli_command("train", "-u", settings.name, "--hparam", "nbEpoch=1"), cwd=workdir,
                               env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = _lines(process)
    print("\n".join(lines))
    assert process.returncode == 0
    assert lines[0].startswith("Experiment folder: "), lines[:3]
    assert lines.index(LOADED) > 0
    folder = Path(lines[0].removeprefix("Experiment folder: "))
    assert folder.name.startswith("my_test_") and folder.name.endswith("_nbEpoch=1")
    assert read_run(folder)["status"] == "finished" and not (folder / MARKER_NAME).exists()
    assert f"experiment folder: {folder}" in lines  # the closing report names the same folder
    noise = [line for line in lines if ABSL_LINE.match(line) or is_noise(line) or "cuInit" in line]
    assert noise == []
    assert sum(line.startswith("Experiment folder: ") for line in lines) == 1


@pytest.mark.slow
@pytest.mark.claim(
    'each problem is one `error:` line naming file, function and what was expected; exit 2; the announced folder '
    'removed, nothing left')
@pytest.mark.claim(
    'a run killed before training leaves only `.starting`; the next run in that working folder removes it',
    note='(SIGKILL while the settings file runs)')
def test_broken_settings_file_leaves_no_folder_and_a_killed_start_is_cleaned(workdir):
    """A run whose settings file fails removes the folder it announced (and the working folder it created);
    a run killed before training leaves its folder marked, and the next run in that working folder removes it."""
    working = workdir / "runs" / "deeper"
    broken = _settings_with(workdir, "mysettings_broken.py",
                            bottom_lines=["def get_input_pipeline(*args, **kwargs):", "    raise ValueError('bad')"])
    source = broken.read_text().replace("workingFolder = 'experiments/examples/curve_fitting'",
                                        f"workingFolder = {str(working)!r}")
    assert source != broken.read_text()
    broken.write_text(source)
    result = subprocess.run(cli_command("train", "-u", broken.name), cwd=workdir, env=cli_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[0].startswith(f"Experiment folder: {working}/my_test_")
    assert "get_input_pipeline" in result.stderr.splitlines()[-1]
    assert not (workdir / "runs").exists()  # created for this run, removed with it

    hanging = _settings_with(workdir, "mysettings_hanging.py",
                             bottom_lines=["import time", f"print({LOADED!r}, flush=True)", "time.sleep(600)"])
    hanging.write_text(hanging.read_text().replace("workingFolder = 'experiments/examples/curve_fitting'",
                                                   f"workingFolder = {str(working)!r}"))
    process = subprocess.Popen(cli_command("train", "-u", hanging.name), cwd=workdir, env=cli_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    wait_for(lambda: seen.append(process.stdout.readline()) or LOADED in seen[-1], 120, "the settings file running")
    process.send_signal(signal.SIGKILL)
    process.wait()
    [abandoned] = working.iterdir()
    assert (abandoned / MARKER_NAME).read_text().split()[1] == str(process.pid)

    result = subprocess.run(cli_command("train", "-u", broken.name), cwd=workdir, env=cli_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert f"Removed {abandoned}" in result.stderr
    assert not abandoned.exists()


@pytest.mark.slow
@pytest.mark.claim(
    'the first line, at once, is `Experiment folder: ...`, before the settings file (and TensorFlow) is loaded; '
    'the closing report names the same folder')
def test_resume_names_its_folder_first(workdir, run_cli):
    trained = run_cli("train", "-u", REGRESSION_SETTINGS, "--hparam", "nbEpoch=1")
    assert trained.returncode == 0, trained.stderr
    folder = next(Path("experiments/examples/curve_fitting").glob("my_test_*"))
    resumed = subprocess.run(cli_command("train", "--resume", str(folder)), cwd=workdir, env=cli_env(),
                             capture_output=True, text=True, timeout=300)  # a new interpreter: its start-up is the test
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.splitlines()[0] == f"Resuming {folder}"
    assert not any(ABSL_LINE.match(line) for line in resumed.stderr.splitlines())


def test_a_folder_still_starting_says_so_to_serve_and_predict(workdir):
    """The folder line comes before run.json exists: a user who passes that folder to `serve` / `predict` at once
    is told the run is still starting, not that it is no experiment folder."""
    import pytest

    from experiments_manager.run.experiment import Experiment
    from experiments_manager.utils.errors import UserInputError

    reservation = FolderReservation.reserve(workdir / REGRESSION_SETTINGS, {})
    try:
        with pytest.raises(UserInputError, match=r"the run is still starting \(no run.json yet\): try again once it "
                                                 r"prints its first epoch"):
            Experiment.open(reservation.root)
    finally:
        reservation.release()
    reservation.root.mkdir(parents=True)
    with pytest.raises(UserInputError, match=r"not an experiment folder \(no run.json\)"):
        Experiment.open(reservation.root)


@pytest.mark.claim(
    'a computed `workingFolder` is named once it is known',
    note='(weak: the reservation is refused; the later line is asserted by the other training tests)')
def test_only_literal_names_are_read_before_running(tmp_path):
    """A folder is reserved only from names the file assigns once, at its top level, to a literal; a computed
    name, a second assignment or a federated file reserves nothing (the run names its folder later)."""
    cases = {
        "workingFolder = 'runs'\nsession_name = 's'\n": {"workingFolder": "runs", "session_name": "s"},
        "import os\nworkingFolder = os.path.join('a', 'b')\nsession_name = 's'\n":
            {"workingFolder": NOT_LITERAL, "session_name": "s"},
        "workingFolder = 'a'\nworkingFolder = 'b'\nsession_name = 's'\n":
            {"workingFolder": NOT_LITERAL, "session_name": "s"},
        "if True:\n    workingFolder = 'a'\nsession_name = 's'\n": {"workingFolder": NOT_LITERAL, "session_name": "s"},
        "from elsewhere import workingFolder\nsession_name = 's'\n":
            {"workingFolder": NOT_LITERAL, "session_name": "s"},
        "this is not python": {},
    }
    for number, (source, expected) in enumerate(cases.items()):
        path = tmp_path / f"settings_{number}.py"
        path.write_text(source)
        assert literal_assignments(path, ("workingFolder", "session_name")) == expected, source
    federated = tmp_path / "federated.py"
    federated.write_text(f"workingFolder = {str(tmp_path / 'runs')!r}\nsession_name = 's'\n"
                         "enable_federated_learning = True\n")
    assert FolderReservation.reserve(federated, {}) is None and not (tmp_path / "runs").exists()
    computed = tmp_path / "settings_1.py"
    assert FolderReservation.reserve(computed, {}) is None


@pytest.mark.claim(
    "TensorFlow's native start-up lines are kept off the terminal; any other line shows",
    note='(a driver-mismatch cuInit error and a fatal line pass)')
def test_filtered_stderr_drops_only_the_noise():
    """Native writes to file descriptor 2 inside the window: each noise pattern dropped, every other line kept in
    order (a real error, a partial last line); outside the window nothing is filtered."""
    samples = {
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR": True,
        "I0000 00:00:1795379603.779968    2821 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
        "GPU will not be used.": True,
        "E0000 00:00:1795379607.443339    2821 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
        "Failed call to cuInit: UNKNOWN ERROR (303)": True,
        "E0000 00:00:1.0  1 cuda_platform.cc:52] failed call to cuInit: CUDA_ERROR_NO_DEVICE: no CUDA-capable "
        "device is detected": True,
        "E0000 00:00:1.0  1 cuda_platform.cc:52] failed call to cuInit: CUDA_ERROR_SYSTEM_DRIVER_MISMATCH: "
        "system has unsupported display driver / cuda driver combination": False,  # a real error
        "E0000 00:00:1.0  1 cuda_dnn.cc:8310] Unable to register cuDNN factory: Attempting to register factory for "
        "plugin cuDNN when one has already been registered": True,
        "F0000 00:00:1.0  1 some_op.cc:1] Check failed: a real crash": False,
    }
    assert [is_noise(line) for line in samples] == list(samples.values())
    assert len(NOISE) >= 5
    script = "\n".join([
        "import os",
        "from experiments_manager.utils.native_noise import filtered_stderr",
        "with filtered_stderr():",
        *[f"    os.write(2, {(line + chr(10)).encode()!r})" for line in samples],
        "    os.write(2, b'partial, no newline')",
        "os.write(2, b'\\n' + " + repr((next(iter(samples)) + "\n").encode()) + ")",
    ])
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    assert result.returncode == 0, result.stderr
    kept = [line for line, dropped in samples.items() if not dropped]
    assert result.stderr.splitlines() == [*kept, "partial, no newline", next(iter(samples))]
