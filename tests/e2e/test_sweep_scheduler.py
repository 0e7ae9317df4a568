"""`sweep --scheduler asha`: real worker processes sharing a sweep folder (`--join`), one killed with SIGKILL
mid-trial; trials paused at rungs and promoted from their own checkpoints; device-hours in `list` and the summary.
The promotion rule itself, with many processes and no training, is tested in tests/unit/sweeps/test_scheduler.py."""

import csv
import json
import re
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import REGRESSION_SETTINGS, cli_env, read_run, run_command, start_forked, wait_for

JOIN = "asha_test"
ASHA = ("--join", JOIN, "--max-evals", "4", "--scheduler", "asha", "--eta", "2", "--hparam", "nbEpoch=4",
        "--algo", "rand", "--seed", "11")


def promotions(text):
    return re.findall(r"^promoting trial (\d+)/4 .* to (\d+) epochs", text, re.MULTILINE)


@pytest.mark.slow
@pytest.mark.claim("`sweep --scheduler asha|hyperband`: trials paused at rungs, the top 1/eta promoted from their own "
                   "checkpoints, by any worker", note="(2 `--join` workers, eta 2, 1 -> 2 -> 4 epochs)")
@pytest.mark.claim("a worker killed mid-trial: its promoted trial is taken over and continues from its checkpoint",
                   note="(SIGKILL of the worker that promoted first)")
@pytest.mark.claim("`results.csv` and `sweep.json` of a scheduled sweep: status, rung, epochs trained, device-hours")
@pytest.mark.claim("`list` shows each run's `device_hours` (table, CSV, JSON)")
@pytest.mark.timeout(900)
def test_two_workers_pause_and_promote_trials_from_their_checkpoints_and_one_killed_changes_nothing(workdir,
                                                                                                   tmp_path):
    logs = [tmp_path / f"worker_{index}.log" for index in range(2)]
    workers = []
    for log in logs:
        with open(log, "w") as handle:
            workers.append(start_forked(["sweep", "-u", REGRESSION_SETTINGS, *ASHA], cwd=workdir, stdout=handle,
                                        stderr=subprocess.STDOUT))  # its trial hosts forked too
    try:
        def first_promoter():
            return next((index for index, log in enumerate(logs) if promotions(log.read_text())), None)

        killed = wait_for(lambda: first_promoter() is not None or any(w.poll() is not None for w in workers), 600,
                          "a first promotion")
        killed = first_promoter()
        assert killed is not None, "\n".join(log.read_text() for log in logs)
        workers[killed].send_signal(signal.SIGKILL)  # the worker only: its trial process notices and stops
        workers[killed].wait(timeout=30)
        survivor = workers[1 - killed]
        survivor.wait(timeout=600)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    outputs = [log.read_text() for log in logs]
    assert survivor.returncode == 0, outputs[1 - killed]
    promoted_by_killed = promotions(outputs[killed])[0]
    (sweep,) = (workdir / "experiments/examples/curve_fitting").glob(f"*_sweep_{JOIN}")
    spec = json.loads((sweep / "sweep.json").read_text())
    assert len(list((sweep / "choices").glob("*.json"))) <= 1  # progress (device-hours) is no new choice
    assert spec["status"] == "finished" and spec["scheduler"] == {"kind": "asha", "max_epochs": 4, "eta": 2,
                                                                  "min_epochs": 1}
    with open(sweep / "results.csv", newline="") as handle:
        rows = {int(row["trial"]): row for row in csv.DictReader(handle)}
    assert len(rows) == 4 and {row["status"] for row in rows.values()} <= {"paused", "finished"}, rows
    every = promotions(outputs[0]) + promotions(outputs[1])
    assert len(every) == len(set(every)), every  # each trial promoted at most once per rung
    assert f"taking over trial {promoted_by_killed[0]}/4" in outputs[1 - killed]
    reached = {int(number) for number, epochs in every}
    values = {number: json.loads((sweep / "trials" / f"trial-{number:04d}.json").read_text())["rung_values"]
              for number in rows}
    top_half = sorted(rows, key=lambda number: values[number]["1"])[:2]
    assert set(top_half) <= reached, (values, every)  # (asynchronous: an early promotion may have left the top)
    assert any(row["status"] == "finished" for row in rows.values())
    for number, row in rows.items():
        run = read_run(row["experiment"])
        history = (Path(row["experiment"]) / "history.csv").read_text().splitlines()[1:]
        trained = int(row["epochs_trained"])
        assert [int(line.split(",")[0]) for line in history] == list(range(1, trained + 1)), number  # none twice
        assert trained == int(row["rung"]) and (trained > 1) == (number in reached), (number, row, every)
        assert set(values[number]) == {str(epochs) for epochs in (1, 2, 4) if epochs <= trained}
        extended = [attempt["extended_from"] for attempt in run["attempts"] if attempt.get("extended_from")]
        # (an attempt stopped as it began, the killed worker's, and the one that took it over both extend from its rung)
        assert extended == sorted(extended) and all(epochs < trained for epochs in extended), run["attempts"]
        assert run["status"] == "finished"
    assert spec["device_hours"] > 0 and spec["device_hours_full"] > spec["device_hours"]
    assert "device-hours:" in outputs[1 - killed]
    # the survivor's summary counts trials and their segments; in its log, a trial's line at a rung comes before the
    # line of its promotion from that rung
    survivor_output = outputs[1 - killed]
    summary = re.search(r"^trained here: +(\d+) trials?(?: in (\d+) segments \((.*)\))?$", survivor_output,
                        re.MULTILINE)
    assert summary and (summary[2] is None or int(summary[2]) > int(summary[1])), survivor_output
    print("survivor:", summary[0])
    for line in re.finditer(r"^promoting trial (\d+)/4 \(paused at (\d+) epochs", survivor_output, re.MULTILINE):
        paused = re.search(rf"^trial {line[1]}/4 paused at {line[2]} epochs:", survivor_output, re.MULTILINE)
        assert paused is None or paused.start() < line.start(), survivor_output
    listed = run_command(["list", str(sweep), "--format", "json", "--sort", "device_hours"],
                         cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=120)
    hours = [run["device_hours"] for run in json.loads(listed.stdout)]
    assert len(hours) == 4 and all(h > 0 for h in hours) and hours == sorted(hours), listed.stdout
    assert abs(sum(hours) - spec["device_hours"]) < 1e-3
    table = run_command(["list", str(sweep)], cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert table.stdout.splitlines()[0].split()[-1] == "DEVICE_HOURS", table.stdout


@pytest.mark.slow
@pytest.mark.claim("a paused trial promoted by the worker that trained it continues with its model in memory, its "
                   "checkpoint restored into it", note="(in one process: the same weights as a copy of the run "
                                                        "continued by a new model from its checkpoint)")
def test_a_run_continued_with_its_model_in_memory_trains_as_one_continued_from_its_checkpoint(workdir, caplog):
    """What a warm trial host does at a promotion (`training.resume(warm=outcome.built)`), against the cold resume
    of a copy of the same run at the same rung: the same epochs, the same weights."""
    import logging
    import shutil

    import numpy as np

    from experiments_manager import training
    from experiments_manager.settings import load_settings

    settings = load_settings(REGRESSION_SETTINGS, {"nbEpoch": 4, "nb_train_samples": 2000})
    settings.train_for(1)  # a rung of 1 epoch
    first = training.train(settings)
    assert first.status == "finished" and first.built is not None
    copy = shutil.copytree(first.experiment.root, first.experiment.root.with_name("copy_of_the_run"))
    with caplog.at_level(logging.INFO, logger="experiments_manager"):
        warm = training.resume(first.experiment.root, epochs=2, warm=first.built)
    assert "Continuing with the model this process trained it with" in caplog.text
    assert warm.trained_model is first.built.model, "the model in memory went on"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="experiments_manager"):
        cold = training.resume(copy, epochs=2)
    assert "Continuing with the model" not in caplog.text
    assert warm.status == cold.status == "finished"
    for run in (first.experiment.root, copy):
        history = (run / "history.csv").read_text().splitlines()[1:]
        assert [int(line.split(",")[0]) for line in history] == [1, 2]
    for got, expected in zip(warm.trained_model.get_weights(), cold.trained_model.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert read_run(first.experiment.root)["best_value"] == pytest.approx(read_run(copy)["best_value"], rel=1e-6)
