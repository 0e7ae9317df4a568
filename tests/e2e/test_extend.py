"""Runs extended in place (`train --resume RUN --epochs N`), fine-tuned from another run's version (`--init-from`),
their console output kept in train.log, and `serve` of a run that has no version yet.

One 2-epoch run is trained in-process (exporting every epoch) and extended to 4 epochs through the CLI, once for the
module; the fine-tuning tests start from it.
"""

import re
import shlex
import signal
import subprocess
import threading
import types

import numpy as np
import pytest

from conftest import RAN_AS, REPO, cli_env, read_run, run_command, settings_variant, start_forked, wait_for

pytestmark = pytest.mark.slow  # its module fixtures train several runs (make test-fast leaves it out)

PROGRESS_LINE = re.compile(r"^\d+/\d+ - \d+s - .*loss: ")
FIRST_COMMAND = ["experiments-manager", "train", "-u", "examples/regression/extend.py", "--hparam", "nbEpoch=2"]
PROBE = np.linspace(-2, 2, 9, dtype=np.float32).reshape(-1, 1)
# what the fine-tuned model computes as training begins: its initial weights, seen from outside
CAPTURE_LINES = [
    "import keras as _keras",
    "def addon_callbacks(model, train_samples, val_samples):",
    "    class _AtStart(_keras.callbacks.Callback):",
    "        def on_train_begin(self, logs=None):",
    "            probe = np.linspace(-2, 2, 9, dtype=np.float32).reshape(-1, 1)",
    "            np.save('at_start.npy', np.asarray(self.model(probe, training=False)))",
    "    return [_AtStart()]",
]
# a Ctrl-C, or a bug, at the end of epoch 1, before its version is exported, while the file `stop` says so
STOP_LINES = [
    "import os as _os, keras as _keras",
    "def addon_callbacks(model, train_samples, val_samples):",
    "    class _Stop(_keras.callbacks.Callback):",
    "        def on_epoch_end(self, epoch, logs=None):",
    "            how = open('stop').read() if _os.path.exists('stop') else ''",
    "            if how == 'interrupt':",
    "                raise KeyboardInterrupt",
    "            if how == 'fail':",
    "                raise ValueError('the data went bad')",
    "    return [_Stop()]",
]


def _history_epochs(run):
    lines = (run / "history.csv").read_text().splitlines()
    return [int(line.split(",")[0]) for line in lines[1:]], lines


def _versions(run):
    return sorted(int(path.name) for path in (run / "exported_models").iterdir() if path.name.isdigit())


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    """A 2-epoch run (in-process, a version every epoch), then `train --resume RUN --epochs 4` through the CLI."""
    import shutil

    from experiments_manager import training

    root = tmp_path_factory.mktemp("extend")
    shutil.copytree(REPO / "examples", root / "examples")
    settings = settings_variant(root, "extend.py", ["save_only_last_best_model = False", "nb_train_samples = 200",
                                                    "nb_val_samples = 100", "workingFolder = 'experiments/extend'"])
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        outcome = training.train(str(settings), {"nbEpoch": 2}, command=FIRST_COMMAND)
    assert outcome.status == "finished"
    run = root / outcome.experiment.root
    before = types.SimpleNamespace(info=read_run(run), history=_history_epochs(run)[1], versions=_versions(run))
    result = run_command(["train", "--resume", str(run), "--epochs", "4"], cwd=root, env=cli_env(),
                         capture_output=True, text=True, timeout=300)
    return types.SimpleNamespace(root=root, run=run, settings=settings, before=before, result=result)


@pytest.mark.claim(
    '`train --resume RUN --epochs N` continues a finished run in place: history.csv epochs once each, versions go '
    "on from the last, best value goes on, run.json `nbEpoch` N, the attempt's `epochs` / `extended_from`, status "
    'finished',
    note='(2 epochs in-process, then 4 through the CLI)')
@pytest.mark.claim(
    'N not above the epochs trained is one line, nothing recorded',
    note='(`resume(RUN, epochs=3)` of the 4-epoch run)')
@pytest.mark.claim("the summary prints the served model name (the model file's)")
def test_a_finished_run_extended_to_4_epochs_continues_in_place(extended):
    from experiments_manager import training
    from experiments_manager.utils.errors import UserInputError

    result, run, before = extended.result, extended.run, extended.before
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Extending {run} from 2 to 4 epochs" in result.stderr and "Resuming after epoch 2" in result.stderr
    epochs, rows = _history_epochs(run)
    assert epochs == [1, 2, 3, 4]  # continued, no epoch repeated
    assert rows[:3] == before.history  # the first attempt's rows as they were
    assert before.versions == [1, 2] and _versions(run) == [1, 2, 3, 4]  # the versions go on from the last one
    info = read_run(run)
    assert (info["status"], info["epochs_completed"], info["nbEpoch"]) == ("finished", 4, 4)
    first, second = info["attempts"]
    assert "epochs" not in first and "extended_from" not in first
    assert (second["epochs"], second["extended_from"], second["status"]) == (4, 2, "finished")
    assert info["best_value"] <= before.info["best_value"]  # the best value went on, not started again
    assert info["best_epoch"] in (before.info["best_epoch"], 3, 4)
    assert "Epoch 3/4" in result.stdout and f"extend with:       {RAN_AS} train --resume" in result.stdout
    assert f"served model name: model_curve_fitting ({RAN_AS} serve --model_dir {run})" in result.stdout
    with pytest.raises(UserInputError, match=r": --epochs: expected more than the 4 epochs the run has trained, "
                                             r"got 3$"):
        training.resume(run, epochs=3, command=["em.resume", str(run), "--epochs", "3"])
    assert read_run(run)["attempts"] == info["attempts"]  # refused before anything was recorded


@pytest.mark.claim(
    'train.log: each attempt after a line with its command line; its epoch lines, log lines and summary (every '
    "line the terminal's stdout showed)")
def test_train_log_holds_each_attempts_command_line_and_epoch_lines(extended):
    text = (extended.run / "train.log").read_text()
    lines = text.splitlines()
    assert lines[0].startswith("--- ") and lines[0].endswith(": " + shlex.join(FIRST_COMMAND))
    headers = [index for index, line in enumerate(lines) if line.startswith("--- ")]
    first, second = lines[headers[0]:headers[1]], lines[headers[1]:headers[2] if len(headers) > 2 else None]
    assert second[0].endswith(f"train --resume {extended.run} --epochs 4")
    for part, epochs in ((first, (1, 2)), (second, (3, 4))):
        shown = [line for line in part if re.match(r"^Epoch \d+/\d+$", line) or PROGRESS_LINE.match(line)]
        assert ["progress" if PROGRESS_LINE.match(line) else line for line in shown] == [
            line for epoch in epochs for line in (f"Epoch {epoch}/{epochs[-1]}", "progress")], part
    assert "Resuming after epoch 2" in second and f"Extending {extended.run} from 2 to 4 epochs" in second
    missing = [line for line in extended.result.stdout.splitlines() if line.strip() and line not in second]
    assert not missing, f"printed on the terminal but not in train.log: {missing}"  # epoch lines and the summary


@pytest.mark.claim(
    "`--init-from RUN:VERSION` starts from that version's EMA weights; `fine_tuned_from` recorded; the log says it",
    note="(`em.train`; the model at `on_train_begin` against version 2's `served_model`, rtol 1e-6; not the "
         "newest's)")
def test_fine_tuning_starts_from_the_chosen_versions_ema_weights_and_records_the_link(extended, caplog):
    import tensorflow as tf

    import experiments_manager as em

    settings = settings_variant(extended.root, "fine_tune.py", [*CAPTURE_LINES, "nb_train_samples = 200",
                                                                "nb_val_samples = 100",
                                                                "workingFolder = 'experiments/fine_tuned'"])
    caplog.set_level("INFO", logger="experiments_manager")  # our lines, as a console shows them (pytest holds the root)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(extended.root)
        outcome = em.train(str(settings), {"nbEpoch": 1}, init_from=f"{extended.run}:2")
    assert outcome.status == "finished"
    at_start = np.load(extended.root / "at_start.npy")
    served = {version: tf.saved_model.load(str(extended.run / "exported_models" / str(version)))
              for version in (2, 4)}  # kept: a loaded function reads its object's variables
    np.testing.assert_allclose(at_start, served[2].served_model(PROBE)["prediction"].numpy(), rtol=1e-6, atol=1e-7)
    assert not np.allclose(at_start, served[4].served_model(PROBE)["prediction"].numpy(), rtol=1e-4)  # not the newest
    run = extended.root / outcome.experiment.root
    lineage = read_run(run)["fine_tuned_from"]
    assert (lineage["run"], lineage["version"]) == (str(extended.run.resolve()), 2)
    assert lineage["weights_loaded"] == lineage["weights"] > 0 and "skipped" not in lineage, lineage
    assert re.search(rf"Fine-tuning: loaded (\d+) of \1 weights of the new model from "
                     rf"{re.escape(str(extended.run.resolve()))} version 2 \(EMA\): ", (run / "train.log").read_text())


@pytest.mark.claim(
    'a model of another architecture is one line naming the first weight that differs, exit 2, no folder',
    note='(`hiddenNeurons=8` from a 32 run)')
def test_a_different_architecture_is_one_line_exit_2_and_no_folder(extended):
    working = extended.root / "experiments" / "extend"
    runs_before = sorted(working.iterdir())
    result = run_command(["train", "-u", str(extended.settings), "--hparam", "hiddenNeurons=8",
                          "--init-from", str(extended.run)],
                         cwd=extended.root, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.fullmatch(rf"error: {re.escape(str(extended.run.resolve()))} version \d+: --init-from: expected "
                        r"weights of the new model's shapes, got none: dense/kernel: expected the new model's shape "
                        r"\(1, 8\), got \(1, 32\) \(5 more weights left out\)", errors[0]), errors
    assert sorted(working.iterdir()) == runs_before  # no folder left behind


@pytest.mark.claim(
    '`serve --model_dir RUN` of a run with no version yet says so with its status, then serves the first one '
    'written',
    note='(a run interrupted in epoch 1, then resumed in-process while `serve` runs)')
@pytest.mark.claim(
    '... and a run that ended (failed, finished) without a version is refused in one line with its status, exit 2',
    note='(a run failed in epoch 1)')
def test_serve_of_a_run_without_a_version_says_its_status_then_serves_the_first_one(extended):
    import requests

    from experiments_manager import training
    from experiments_manager.utils.errors import UserInputError

    settings = settings_variant(extended.root, "stops.py", [*STOP_LINES, "nb_train_samples = 200",
                                                            "nb_val_samples = 100",
                                                            "workingFolder = 'experiments/stops'"])
    stop = extended.root / "stop"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(extended.root)
        stop.write_text("fail")
        with pytest.raises(UserInputError, match="the data went bad"):
            training.train(str(settings), {"nbEpoch": 2})
        stop.write_text("interrupt")
        with pytest.raises(KeyboardInterrupt):
            training.train(str(settings), {"nbEpoch": 2})
    failed, interrupted = sorted((extended.root / "experiments" / "stops").iterdir())
    assert (read_run(failed)["status"], read_run(interrupted)["status"]) == ("failed", "interrupted")

    refused = run_command(["serve", "--model_dir", str(failed), "--rest-port", "0"], env=cli_env(),
                          capture_output=True, text=True, timeout=120)
    raised_at = next(number for number, line in enumerate((extended.root / settings).read_text().splitlines(), 1)
                     if "raise ValueError" in line)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"error: {failed}: exported_models: expected a version to serve, got none (status: failed, 0 of 2 epochs "
        f"done: stops.py: on_epoch_end (line {raised_at}): raised ValueError: the data went bad)"]

    process = start_forked(["serve", "--model_dir", str(interrupted), "--grpc-port", "0", "--rest-port", "0",
                            "--file_system_poll_wait_seconds", "0.2"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    try:
        def rest_url():
            assert process.poll() is None, "serve exited:\n" + "".join(lines)
            found = [re.search(r"REST: (http://\S+)/v1/models/model_curve_fitting$", line.rstrip()) for line in lines]
            return next((match[1] for match in found if match), None)

        rest = wait_for(rest_url, 120, "serve to print its REST address")
        said = f"{interrupted} has no exported version yet (status: interrupted, 0 of 2 epochs done); it will be " \
               f"served as soon as one is written (resume it: {RAN_AS} train --resume {interrupted})\n"
        assert said in lines, lines
        stop.unlink()
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(extended.root)
            assert training.resume(interrupted).status == "finished"

        def answered():
            response = requests.post(f"{rest}/v1/models/model_curve_fitting:predict", json={"instances": [[0.5]]},
                                     timeout=10)
            return response.status_code == 200 and response.json()

        assert len(wait_for(answered, 60, "the first version to be served")["predictions"]) == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.claim('a run that stopped early, extended, trains on with its best kept and its patience started over')
def test_a_run_stopped_early_extended_trains_on_until_its_patience_runs_out_again(extended, monkeypatch):
    """A learning rate of 0: the validation loss never improves after epoch 1, so patience 2 stops the run at epoch
    3. `--more-epochs 5` trains on with the best value kept and the patience counter started over: epochs 4 and 5,
    then it stops again (not at epoch 4, the first epoch without improvement)."""
    from experiments_manager import training

    monkeypatch.chdir(extended.root)
    settings = settings_variant(extended.root, "stalled.py", [
        "nb_train_samples = 100", "nb_val_samples = 50", "early_stopping_patience = 2",
        "workingFolder = 'experiments/stalled'", "def get_learningRate():", "    return 0.0"])
    outcome = training.train(str(settings), {"nbEpoch": 10})
    run = extended.root / outcome.experiment.root
    assert outcome.status == "finished" and read_run(run)["epochs_completed"] == 3, read_run(run)
    best = read_run(run)["best_value"]
    outcome = training.resume(run, more_epochs=5)
    info = read_run(run)
    assert outcome.status == "finished" and info["epochs_completed"] == 5 and info["best_value"] == best, info
    assert info["best_epoch"] == 1 and _history_epochs(run)[0] == [1, 2, 3, 4, 5]


@pytest.mark.claim('a requeued `--more-epochs K` (the same command after a preemption) trains to the same total')
def test_a_requeued_more_epochs_command_trains_to_the_same_total(extended, monkeypatch):
    """`train --resume RUN --more-epochs 3` preempted mid-way and run again (a requeued job): the 3 epochs count
    from where the extension began (1 + 3), not from where it was stopped."""
    from experiments_manager import training

    monkeypatch.chdir(extended.root)
    settings = settings_variant(extended.root, "requeued.py", [
        "nb_train_samples = 100", "nb_val_samples = 50", "workingFolder = 'experiments/requeued'",
        "import os as _os, signal as _signal, keras as _keras",
        "def addon_callbacks(model, train_samples, val_samples):",
        "    class _Preempted(_keras.callbacks.Callback):",  # a Ctrl-C at the end of the epoch named in `stop_at`
        "        def on_epoch_end(self, epoch, logs=None):",
        "            if _os.path.exists('stop_at') and open('stop_at').read() == str(epoch + 1):",
        "                _os.kill(_os.getpid(), _signal.SIGINT)",
        "    return [_Preempted()]"])
    outcome = training.train(str(settings), {"nbEpoch": 1})
    run = extended.root / outcome.experiment.root
    (extended.root / "stop_at").write_text("3")
    stopped = run_command(["train", "--resume", str(run), "--more-epochs", "3"], cwd=extended.root,
                          env=cli_env(), capture_output=True, text=True, timeout=300)
    (extended.root / "stop_at").unlink()
    assert stopped.returncode == 130 and read_run(run)["epochs_completed"] >= 2, stopped.stderr
    outcome = training.resume(run, more_epochs=3)  # the same command again
    info = read_run(run)
    assert outcome.status == "finished" and info["epochs_completed"] == 4 and info["nbEpoch"] == 4, info
    assert [attempt.get("extended_from") for attempt in info["attempts"]] == [None, 1, 1], info["attempts"]
