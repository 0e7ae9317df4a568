"""Durable writes: what a run wrote before the machine lost power is there, whole, after the reboot.

The experiment lives on a real ext4 file system (a loop-mounted image, tests/real_filesystems.py) that is stopped
without flushing anything, as a power loss would: only what the engine fsynced survives. Needs root (CI has it);
skipped elsewhere, failed in CI (EXPERIMENTS_MANAGER_REAL_PARTS=required) when the machine cannot mount it.
"""

import hashlib
import json
import re
from pathlib import Path

import numpy as np

import pytest

from conftest import RAN_AS, read_run, settings_variant, single_experiment, wait_for
from real_filesystems import ext4_image, resize, tmpfs

NB_EPOCH = 10  # the run is killed after its 4th checkpoint: 6 epochs of margin before it could end on its own
KILLED_AFTER = 4
MODEL_FILE = "examples/regression/model_curve_fitting.py"


def files_and_digests(root):
    """{relative path: (size, sha256)} of every file under `root`."""
    return {str(path.relative_to(root)): (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
            for path in Path(root).rglob("*") if path.is_file()}


def what_was_lost(before, after):
    """One report of the files the power loss changed, of those the run had written (non-empty) before it: left
    zero bytes, removed, or with other bytes (a size that reached the disk before the data: zeros)."""
    written = {name for name, (size, _) in before.items() if size > 0}
    emptied = sorted(name for name in written if name in after and after[name][0] == 0)
    gone = sorted(name for name in written if name not in after)
    garbled = sorted(name for name in written - set(emptied) - set(gone) if after[name] != before[name])
    return (f"the power loss left {len(emptied)} of {len(written)} written files zero bytes: {emptied}; "
            f"removed {len(gone)}: {gone}; changed the bytes of {len(garbled)}: {garbled}")


def newest_checkpoint(root):
    states = (root / "checkpoints").glob("ckpt-*/state.json")
    return max((int(state.parent.name.removeprefix("ckpt-")) for state in states), default=0)


def killed_after_epoch(root, epoch):
    """True once the run has checkpointed `epoch` (its ckpt-N, or run.json saying so)."""
    if newest_checkpoint(root) >= epoch:
        return True
    try:
        return read_run(root)["epochs_completed"] >= epoch
    except (OSError, ValueError, KeyError):  # not written yet
        return False


def read_state(path):
    return json.loads(path.read_text())["epochs_completed"]


def read_npz(path):
    with np.load(path) as saved:
        return [saved[key] for key in saved.files]


def read_h5(path):
    import h5py

    arrays = []

    def read(_, item):
        if isinstance(item, h5py.Dataset):
            arrays.append(item[()])

    with h5py.File(path, "r") as weights:
        weights.visititems(read)
    return arrays


def checkpoint_problems(folder):
    """What keeps checkpoint `folder` (one with a state.json) from being resumed: empty or unreadable files."""
    problems = [f"{path.name}: 0 bytes" for path in sorted(folder.iterdir()) if path.stat().st_size == 0]
    for name, read in (("state.json", read_state), ("optimizer.npz", read_npz), ("model.weights.h5", read_h5)):
        if any(problem.startswith(f"{name}:") for problem in problems):
            continue
        try:
            read(folder / name)
        except Exception as error:  # noqa: BLE001 - any failure to read is the finding
            problems.append(f"{name}: {type(error).__name__}: {error}")
    return problems


def version_problem(folder):
    """Why exported version `folder` does not load and answer serving_default, or None."""
    import tensorflow as tf

    try:
        served = tf.saved_model.load(str(folder)).signatures["serving_default"]
        prediction = served(input=tf.constant([[0.5], [-1.0]], tf.float32))["prediction"].numpy()
    except Exception as error:  # noqa: BLE001 - any failure to load or answer is the finding
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    if prediction.shape != (2, 1) or not np.isfinite(prediction).all():
        return f"answered {prediction!r}"
    return None


def kept_whole(path, content):
    """Whether `path` holds `content` after a power loss."""
    return path.is_file() and path.read_bytes() == content


@pytest.mark.slow
@pytest.mark.claim(
    'durable: a power loss keeps every checkpoint and version run.json lists, the copies, and the run resumes',
    note='(loop-mounted ext4, `EXT4_IOC_SHUTDOWN` without log flush right after kill -9 at the 4th checkpoint; a '
         'control file never fsynced must be lost; the old engine lost the whole folder)')
@pytest.mark.claim("history.csv: damaged rows left out with one warning; rebuilt from the checkpoint's copy",
                   note='(the power-loss test: history.csv came back as zeros)')
def test_a_power_loss_after_kill_9_keeps_every_recorded_checkpoint_and_version_and_the_run_resumes(
        workdir, tmp_path, start_cli, run_cli):
    """kill -9 after the 4th checkpoint, then at once a power loss (nothing flushed): run.json still parses,
    every checkpoint and every version run.json lists is whole, the settings and model copies are the originals,
    and `train --resume` finishes every epoch."""
    with ext4_image(tmp_path) as disk:
        working_folder = disk.mountpoint / "experiments"
        settings = settings_variant(workdir, "durable.py", [
            "save_only_last_best_model = False", "early_stopping_patience = 50",
            f"workingFolder = {str(working_folder)!r}"])
        process = start_cli("train", "-u", str(settings), "--hparam", f"nbEpoch={NB_EPOCH}", warm=True)
        try:
            root = wait_for(lambda: next(working_folder.glob("*/run.json"), None) or process.poll() is not None,
                            120, "the experiment folder")
            assert process.poll() is None, process.communicate()[0]
            root = root.parent
            wait_for(lambda: killed_after_epoch(root, KILLED_AFTER) or process.poll() is not None, 120,
                     f"the checkpoint of epoch {KILLED_AFTER}")
            assert process.poll() is None, f"the run ended before it was killed:\n{process.communicate()[0]}"
        finally:  # nothing may write on the file system when it loses power, or when it is unmounted
            process.kill()
            process.wait(timeout=30)
        before = files_and_digests(root)
        # a write nobody fsyncs, the moment before the power goes: the power loss must lose it (else this test
        # would prove nothing about the engine's writes)
        control = disk.mountpoint / "not_fsynced"
        control.write_bytes(b"x" * 4096)

        disk.power_loss()

        assert not kept_whole(control, b"x" * 4096), "the power loss kept a write never fsynced"
        after = files_and_digests(root) if root.is_dir() else {}
        lost = what_was_lost(before, after)
        print(lost)
        assert root.is_dir(), f"the experiment folder is gone: {lost}"
        try:
            info = read_run(root)
        except (OSError, ValueError) as error:
            raise AssertionError(f"run.json does not parse ({error}): {lost}") from None
        checkpoints = sorted(state.parent for state in (root / "checkpoints").glob("ckpt-*/state.json"))
        broken = {folder.name: problems for folder in checkpoints if (problems := checkpoint_problems(folder))}
        assert not broken, f"checkpoints with a state.json that cannot be resumed: {broken}; {lost}"
        # the checkpoint before the last one seen was finished before the next began: a power loss undoes at most
        # the last epoch
        assert checkpoints and read_state(checkpoints[-1] / "state.json") >= KILLED_AFTER - 1, \
            f"the newest surviving checkpoint is older than epoch {KILLED_AFTER - 1}: {checkpoints}; {lost}"
        unusable = {version: problem for version in info["exported_versions"]
                    if (problem := version_problem(root / "exported_models" / str(version)))}
        assert not unusable, f"versions run.json lists that do not serve: {unusable}; {lost}"
        copies = {"experiment_settings.py": workdir / settings, "model_curve_fitting.py": workdir / MODEL_FILE}
        changed = [name for name, original in copies.items()
                   if not (root / name).is_file() or (root / name).read_bytes() != original.read_bytes()]
        assert not changed, f"copies that are no longer the originals: {changed}; {lost}"

        result = run_cli("train", "--resume", str(root))
        assert result.returncode == 0, f"{(result.stdout + result.stderr)[-3000:]}\n{lost}"
        info = read_run(root)
        assert info["status"] == "finished" and info["epochs_completed"] == NB_EPOCH, info
        history = np.genfromtxt(root / "history.csv", delimiter=",", names=True)
        assert list(history["epoch"].astype(int)) == list(range(1, NB_EPOCH + 1)), \
            f"history.csv epochs {list(history['epoch'].astype(int))}"


def _errors(result):
    """The `error:` lines of stderr; asserts that it holds nothing else than progress lines."""
    lines = result.stderr.splitlines()
    other = [line for line in lines if line.strip() and not line.startswith(PROGRESS + ("error: ",))]
    assert not other, f"lines beside the one error line: {other}"
    return [line for line in lines if line.startswith("error: ")]


PROGRESS = ("Experiment folder: ", "Epoch ", "Monitoring ")  # what stderr shows of a run going well


@pytest.mark.slow
@pytest.mark.claim(
    'a full disk / read-only folder is one line, exit 75, no traceback or segfault; the run resumes once mended',
    note='(a 300 KiB tmpfs, grown, resumed; stderr holds the one line and progress lines, nothing else)')
@pytest.mark.claim("a full disk or read-only folder is one line without TensorFlow's `SaveV2` text",
                   note="(the version 2 write meets the full disk)")
def test_a_full_disk_is_one_line_and_exit_75_and_the_run_resumes_once_there_is_space(workdir, tmp_path, run_cli):
    """The disk fills mid-run (a 300 KiB tmpfs fills in the background write of the second version): one `error:`
    line naming the folder and what to do, exit code 75, no traceback, no segfault (HDF5 never writes to the full
    disk: the weights file is made in memory), and no other line for what else the full disk refused (the export,
    the training curves: TensorFlow's SaveV2 text was one); run.json says interrupted; with space again, the resume
    finishes every epoch."""
    with tmpfs(tmp_path / "small-disk", "300k") as disk:
        settings = settings_variant(workdir, "full.py", [
            "save_only_last_best_model = False", "early_stopping_patience = 50",
            f"workingFolder = {str(disk / 'experiments')!r}"])
        result = run_cli("train", "-u", str(settings), "--hparam", f"nbEpoch={NB_EPOCH}")
        assert result.returncode == 75, result.stdout + result.stderr
        [error] = _errors(result)
        assert "No space left on device: free space on that file system" in error and str(disk) in error
        assert "Traceback" not in result.stderr and f"then resume with: {RAN_AS} train --resume" in error
        root = single_experiment(disk / "experiments")
        info = read_run(root)
        assert info["status"] == "interrupted" and 0 < info["epochs_completed"] < NB_EPOCH, info
        assert info["attempts"][-1]["exit_code"] == 75

        resize(disk, "50m")
        result = run_cli("train", "--resume", str(root))
        assert result.returncode == 0, result.stdout + result.stderr
        info = read_run(root)
        assert info["status"] == "finished" and info["epochs_completed"] == NB_EPOCH
        assert [attempt["status"] for attempt in info["attempts"]] == ["interrupted", "finished"]
        history = np.genfromtxt(root / "history.csv", delimiter=",", names=True)
        assert list(history["epoch"].astype(int)) == list(range(1, NB_EPOCH + 1))


@pytest.mark.claim(
    'a full disk / read-only folder is one line, exit 75, no traceback or segfault; the run resumes once mended')
def test_a_read_only_working_folder_is_one_line_naming_it(workdir, tmp_path, run_cli):
    with tmpfs(tmp_path / "read-only", "1m", read_only=True) as disk:
        settings = settings_variant(workdir, "read_only.py", [f"workingFolder = {str(disk / 'experiments')!r}"])
        result = run_cli("train", "-u", str(settings))
    assert result.returncode == 75, result.stdout + result.stderr
    [error] = _errors(result)
    assert f"{disk / 'experiments'}: Read-only file system: the file system is mounted read-only" in error, error
    assert "Traceback" not in result.stderr


@pytest.mark.claim(
    'a full disk / read-only folder is one line, exit 75, no traceback or segfault; the run resumes once mended',
    note="(a disk too small for the run's copy of its settings: the line names the copy, no folder is left)")
def test_a_run_that_cannot_start_on_a_full_disk_names_the_copy_and_leaves_no_folder(workdir, tmp_path, run_cli):
    with tmpfs(tmp_path / "nearly-full", "64k") as disk:
        settings = settings_variant(workdir, "big.py", [f"workingFolder = {str(disk / 'experiments')!r}",
                                                       "# " + "a long comment " * 10_000])  # 150 KB: no room
        result = run_cli("train", "-u", str(settings))
        assert result.returncode == 75, result.stdout + result.stderr
        [error] = _errors(result)
        assert re.fullmatch(rf"error: {re.escape(str(disk / 'experiments'))}/my_test_[^/]+/experiment_settings.py: No "
                            r"space left on device: free space on that file system .*", error), error
        assert [path for path in disk.rglob("*") if path.name != "experiments"] == []


@pytest.mark.claim(
    'a full disk / read-only folder is one line, exit 75, no traceback or segfault; the run resumes once mended',
    note='(a disk full to its last byte before the ending: the ending still recorded, in the space each attempt '
         'keeps for it)')
def test_the_ending_is_recorded_on_a_disk_full_to_its_last_byte(tmp_path):
    """The attempt's disk fills completely (another tenant's file), then its full-disk error ends it: run.json says
    interrupted with exit 75, written in the space the attempt reserved at its start, which is gone after it."""
    import errno

    from experiments_manager.run import lifecycle
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.space_reserve import RESERVE_NAME

    with tmpfs(tmp_path / "small-disk", "400k") as disk:
        root = disk / "run"
        root.mkdir()
        experiment = Experiment(root)
        experiment.write_run_info({"status": "running", "attempts": [{"number": 1, "status": "running"}]})
        filler = disk / "another-tenant"
        with pytest.raises(OSError) as full:
            with lifecycle.attempt(experiment, ["train"], console=False):
                assert (root / RESERVE_NAME).stat().st_blocks * 512 >= 64 << 10  # allocated, not sparse
                with open(filler, "wb") as handle:
                    while True:  # until the disk is full to its last page
                        handle.write(b"\0" * 4096)
                        handle.flush()
        assert full.value.errno == errno.ENOSPC
        info = experiment.run_info()
        assert (info["status"], info["attempts"][-1]["exit_code"]) == ("interrupted", 75), info
        assert not (root / RESERVE_NAME).exists()
