"""The resume's rules, proven on the pure plan: what a folder holding X and a request asking Y resume to."""

from __future__ import annotations

from typing import Any

import pytest

from experiments_manager.run.resume_plan import (ResumeRequest, ResumeRole, ResumeStep, RunFolderState, TrainFlags,
                                                 plan_resume)
from experiments_manager.utils.errors import UserInputError


def _state(status: str = "interrupted", checkpoint: int | None = None, changes: tuple[str, ...] = (),
           **record: Any) -> RunFolderState:
    return RunFolderState("RUN", {"status": status, **record}, checkpoint, changes)


def test_a_finished_run_not_extended_is_reported_and_its_tracking_records_sent_by_the_chief_only() -> None:
    tracked = _state("finished", mlflow={"tracking_uri": "http://127.0.0.1:5000"})
    for role, sends in ((ResumeRole.ALONE, True), (ResumeRole.CHIEF, True), (ResumeRole.WORKER, False)):
        plan = plan_resume(tracked, ResumeRequest(mlflow="http://other:5000"), role)
        assert (plan.step, plan.send_tracking_left, plan.tracking_uri) == (
            ResumeStep.REPORT_FINISHED, sends, "http://other:5000")
    assert not plan_resume(_state("finished"), ResumeRequest(), ResumeRole.ALONE).send_tracking_left


def test_an_interrupted_run_trains_to_what_its_last_extension_asked_for() -> None:
    attempts = [{"number": 1}, {"number": 2, "epochs": 6, "extended_from": 3}, {"number": 3}]
    plan = plan_resume(_state(attempts=attempts), ResumeRequest(), ResumeRole.ALONE)
    assert (plan.step, plan.epochs, plan.extended_from) == (ResumeStep.TRAIN, 6, None)
    assert plan_resume(_state(), ResumeRequest(), ResumeRole.ALONE).epochs is None  # the settings' nbEpoch


@pytest.mark.parametrize("request_, checkpoint, attempts, expected", [
    (ResumeRequest(epochs=20), 10, [], (20, 10)),
    (ResumeRequest(more_epochs=5), 10, [], (15, 10)),
    # a requeued `--more-epochs 5` job: 5 from where its extension began, not from where the kill left it
    (ResumeRequest(more_epochs=5), 12, [{"number": 2, "extended_from": 10}], (15, 10)),
    (ResumeRequest(epochs=3), None, [], (3, 0)),  # never checkpointed: from scratch
])
def test_an_extension_counts_from_the_checkpoint(request_: ResumeRequest, checkpoint: int | None,
                                                 attempts: list[Any], expected: tuple[int, int]) -> None:
    plan = plan_resume(_state("finished" if not attempts else "interrupted", checkpoint, attempts=attempts),
                       request_, ResumeRole.ALONE)
    assert (plan.step, plan.epochs, plan.extended_from) == (ResumeStep.TRAIN, *expected)


@pytest.mark.claim("a federation's server or client folder is never resumed as one training run: refused in one line, "
                   "nothing moved", note="(the plan's refusal; `train --resume` of a server folder resumes its rounds)")
@pytest.mark.parametrize("state, request_, line", [
    (_state("finished", 10), ResumeRequest(epochs=10), "RUN: --epochs: expected more than the 10 epochs the run has "
     "trained, got 10"),
    (_state("finished", None, epochs_completed=4), ResumeRequest(more_epochs=2), "RUN: --epochs: expected a run with a "
     "checkpoint to continue from, got none (removed?): start a new run from its weights with --init-from RUN"),
    (_state(changes=("model.py",)), ResumeRequest(), "RUN: the code changed since the last attempt ran: model.py; put "
     "it back, or resume with --accept-code-change to train on with it (recorded in run.json)"),
    # a federation's folders are never resumed as one training run (one client's data alone, its versions set aside)
    (_state(federated={"rounds": 5}), ResumeRequest(), "RUN: a federation's server folder: expected to resume it as a "
     "federation (experiments-manager train --resume RUN, or federated simulate --resume RUN), not as one training "
     "run"),
    (RunFolderState("SRV/clients/client_0", {"status": "finished", "federated_client": {"partition_id": 0}}),
     ResumeRequest(), "SRV/clients/client_0: a federated client's folder: it trains only within its federation; "
     "resume the federation: experiments-manager train --resume SRV"),
])
def test_a_refused_resume_is_one_line_naming_the_run(state: RunFolderState, request_: ResumeRequest,
                                                    line: str) -> None:
    with pytest.raises(UserInputError) as refused:
        plan_resume(state, request_, ResumeRole.ALONE)
    assert str(refused.value) == line


def test_accepted_changes_are_recorded_and_the_model_built_before_the_lease_except_in_a_multi_worker_run() -> None:
    changed = _state(changes=("helpers.py",))
    request = ResumeRequest(accept_code_change=True)
    alone = plan_resume(changed, request, ResumeRole.ALONE)
    assert (alone.code_changes, alone.dry_build) == (("helpers.py",), True)
    assert not plan_resume(changed, request, ResumeRole.CHIEF).dry_build  # its strategy comes before any op
    # a worker trains in step with the chief, which checked the code: not refused there
    assert plan_resume(changed, ResumeRequest(), ResumeRole.WORKER).step is ResumeStep.TRAIN_AS_WORKER
    original = plan_resume(_state(), ResumeRequest(settings_source="original"), ResumeRole.ALONE)
    assert (original.settings_source, original.dry_build) == ("original", True)


def test_given_kafka_servers_replace_the_recorded_ones() -> None:
    recorded = _state(kafka_bootstrap_servers="a:9092")
    assert plan_resume(recorded, ResumeRequest(), ResumeRole.ALONE).kafka_bootstrap_servers == "a:9092"
    assert plan_resume(recorded, ResumeRequest(kafka_bootstrap_servers="b:9092"),
                       ResumeRole.ALONE).kafka_bootstrap_servers == "b:9092"


def test_a_request_refuses_what_does_not_go_together() -> None:
    with pytest.raises(UserInputError, match="^RUN: epochs, more_epochs: expected one of them, got both$"):
        plan_resume(_state(), ResumeRequest(epochs=3, more_epochs=1), ResumeRole.ALONE)
    with pytest.raises(UserInputError, match="settings_source: expected one of copy, original, got 'mine'"):
        ResumeRequest(settings_source="mine")


@pytest.mark.parametrize("flags, line", [
    (TrainFlags(), None),
    (TrainFlags(resume=True, epochs=True, accept_code_change=True, settings_source="original"), None),
    (TrainFlags(requeue_file=True, accept_code_change=True), None),
    (TrainFlags(init_from=True, skip_mismatch=True, hparams=True), None),
    (TrainFlags(keep_serving=True), "--keep-serving: only with --serve"),
    (TrainFlags(more_epochs=True), "--more-epochs: only with --resume RUN"),
    (TrainFlags(epochs=True, requeue_file=True), "--epochs: only with --resume RUN"),
    (TrainFlags(resume=True, init_from=True), "--init-from: only for a new run"),
    (TrainFlags(skip_mismatch=True), "--skip-mismatch: only with --init-from RUN"),
    (TrainFlags(accept_code_change=True), "--accept-code-change: only with --resume or --requeue-file"),
    (TrainFlags(settings_source="original"), "--settings-source: only with --resume or --requeue-file"),
    (TrainFlags(resume=True, hparams=True), "--hparam: not accepted with --resume"),
])
def test_the_train_commands_flags_go_together_as_one_table_says(flags: TrainFlags, line: str | None) -> None:
    refusal = flags.refusal()
    assert (refusal if line is None else (refusal or "")[:len(line)]) == line
