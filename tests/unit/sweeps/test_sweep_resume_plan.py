"""sweeps/resume_plan.py and sweeps/sampler.startup_trials: a sweep's resume and join decided from sweep.json and the
request alone (no folder read, no TensorFlow), and TPE's random start-up sized to the sweep."""

from pathlib import Path

import pytest

from experiments_manager.sweeps.request import SweepRequest
from experiments_manager.sweeps.resume_plan import (SweepFacts, check_fixed_hparams, code_decision, join_name,
                                                    joined_spec, resumed_spec)
from experiments_manager.sweeps.sampler import startup_trials
from experiments_manager.utils.errors import UserInputError

SPEC = {"settings_file": "/lab/settings.py", "fixed_hparams": {"nbEpoch": 9}, "algo": "tpe", "seed": 11,
        "startup_trials": 4, "max_evals": 12, "trials_done": 5, "parallelism": 1, "spark_master": None,
        "scheduler": {"kind": "asha", "max_epochs": 9, "eta": 3, "min_epochs": 1}, "mlflow_tracking_uri": None}


def refusal(call, *arguments):
    with pytest.raises(UserInputError) as raised:
        call(*arguments)
    return raised.value.problems


@pytest.mark.claim("TPE's random start-up is sized to the sweep (a quarter of its trials, 3 to 20, 2 per worker), "
                   "`--startup-trials N` sets it, sweep.json records it and the first line says it",
                   note="(the sizing and the flag's refusals; the first line in test_sweep_scheduler.py)")
@pytest.mark.parametrize("max_evals, workers, expected", [
    (12, 1, 3), (12, 2, 4), (40, 1, 10), (100, 1, 20), (1000, 1, 20), (8, 4, 8), (2, 1, 3), (1000, 32, 64)])
def test_tpes_random_start_up_is_a_quarter_of_the_sweep_at_least_3_and_2_per_worker_at_most_20(max_evals, workers,
                                                                                                expected):
    assert startup_trials(max_evals, workers) == expected


def test_a_resume_keeps_the_sweeps_choices_and_changes_only_what_it_may():
    request = SweepRequest(resume="/lab/sweep", max_evals=20, max_epochs=27, workers=2)
    spec = resumed_spec(SPEC, request, SweepFacts())
    assert spec["max_evals"] == 20 and spec["scheduler"]["max_epochs"] == 27 and spec["parallelism"] == 1
    assert {key: spec[key] for key in ("algo", "seed", "startup_trials", "fixed_hparams")} == {
        "algo": "tpe", "seed": 11, "startup_trials": 4, "fixed_hparams": {"nbEpoch": 9}}
    assert resumed_spec(SPEC, SweepRequest(resume="/lab/sweep"), SweepFacts())["max_evals"] == 12
    assert resumed_spec({**SPEC, "parallelism": 4}, SweepRequest(resume="s"), SweepFacts())["parallelism"] == 4
    assert resumed_spec({**SPEC, "parallelism": 4}, SweepRequest(resume="s", workers=2), SweepFacts())[
        "parallelism"] == 1  # --workers: this process' workers, not Spark's


@pytest.mark.parametrize("request_fields, facts, expected", [
    ({"algo": "rand", "seed": 3, "startup_trials": 2}, SweepFacts(),
     ["--algo, --seed, --startup-trials: not accepted with --resume (the sweep keeps its own)"]),
    ({"hparams": {"nbEpoch": 3}}, SweepFacts(), ["--hparam: not accepted with --resume (the sweep keeps its own)"]),
    ({}, SweepFacts(older_engine_running=True), ["/lab/sweep: the sweep is still running (pid 77); stop it first"]),
    ({}, SweepFacts(settings_file_exists=False),
     ["/lab/sweep: sweep.json: settings_file: '/lab/settings.py' not found (the sweep trains from it)"]),
    ({"max_evals": 4}, SweepFacts(), ["--max-evals: expected at least the 5 trials already done, got 4"]),
    ({"max_epochs": 9}, SweepFacts(), ["--max-epochs: expected more than the sweep's 9, got 9"]),
])
def test_a_resume_is_refused_in_one_line_naming_what_it_cannot_do(request_fields, facts, expected):
    request = SweepRequest(resume="/lab/sweep", **request_fields)
    assert refusal(resumed_spec, {**SPEC, "pid": 77}, request, facts) == expected


def test_a_joining_process_takes_the_sweeps_choices_and_may_only_raise_the_total():
    mine = {**SPEC, "seed": 99, "max_evals": 40, "fixed_hparams": {}}
    spec = joined_spec(SPEC, mine, SweepRequest(usersettings="/lab/settings.py", join="55", max_evals=40), "/lab/s")
    assert spec["seed"] == 11 and spec["max_evals"] == 40 and spec["fixed_hparams"] == {"nbEpoch": 9}
    spec = joined_spec(SPEC, mine, SweepRequest(usersettings="/lab/settings.py", join="55", max_evals=3), "/lab/s")
    assert spec["max_evals"] == 12


def test_a_joining_process_that_disagrees_is_refused_one_line_per_option():
    mine = {**SPEC, "settings_file": "/lab/other.py", "fixed_hparams": {"nbEpoch": 2}}
    request = SweepRequest(usersettings="/lab/other.py", join="55", hparams={"nbEpoch": 2}, seed=1, startup_trials=6)
    assert refusal(joined_spec, SPEC, mine, request, "/lab/s") == [
        "--join 55: /lab/s: -u: the sweep trains /lab/settings.py, this process names /lab/other.py (leave the "
        "option out to take the sweep's)",
        "--join 55: /lab/s: --hparam: the sweep fixes nbEpoch=9, this process nbEpoch=2 (leave the option out to "
        "take the sweep's)",
        "--join 55: /lab/s: --seed: the sweep has 11, this process 1 (leave the option out to take the sweep's)",
        "--join 55: /lab/s: --startup-trials: the sweep has 4, this process 6 (leave the option out to take the "
        "sweep's)"]


def test_changed_code_is_refused_unless_accepted_then_recorded():
    changes = ["/lab/model.py (changed)"]
    problems = refusal(code_decision, SPEC, changes, False, "/lab/s", Path("/lab/s/sweep_settings.py"), dict)
    assert problems == ["/lab/s: the code changed since the sweep's trials ran: /lab/model.py (changed); put it back, "
                        "or resume with --accept-code-change (new trials then train with it; the original settings "
                        "are /lab/s/sweep_settings.py)"]
    accepted = code_decision(SPEC, changes, True, "/lab/s", Path("x"), lambda: {"/lab/model.py": "abc"})
    assert accepted["code"] == {"/lab/model.py": "abc"}
    assert code_decision(SPEC, [], False, "/lab/s", Path("x"), dict) == SPEC


def test_names_and_fixed_hparams_a_sweep_cannot_take():
    assert join_name("55_3") == "55_3" and join_name(None) is None
    assert refusal(join_name, "../x") == ["--join: expected a plain name (letters, digits, - and _, e.g. the "
                                          "array's job id), got '../x'"]
    check_fixed_hparams({"nbEpoch": 3}, ["learningRate"], "settings.py")
    assert refusal(check_fixed_hparams, {"learningRate": 0.1}, ["learningRate"], "settings.py") == [
        "--hparam learningRate: also in settings.py's hyperopt_space (a swept hparam cannot be fixed; drop one)"]


def test_startup_trials_are_for_tpe_only():
    SweepRequest(max_evals=4, startup_trials=2).check_combinations()
    assert refusal(SweepRequest(max_evals=4, algo="rand", startup_trials=2).check_combinations) == [
        "--startup-trials: only with --algo tpe (--algo rand has no start-up)"]
