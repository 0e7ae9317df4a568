"""sweeps/scheduler.py and the store's promotions: the rungs of ASHA and Hyperband, which paused trial a worker
promotes, and a sweep driven through the store's asks and tells without training (the loss of a trial at a rung
made up from its hparams): every trial is paused or promoted once per rung, the promoted ones are the top 1/eta,
a worker that dies after promoting leaves the trial to the next, and a raised maximum continues the best."""

import csv
import math
import multiprocessing
import os
import time

import pytest
from hyperopt import hp

from experiments_manager.sweeps.folder import SweepFolder
from experiments_manager.sweeps.journal import TrialEntry
from experiments_manager.sweeps.scheduler import RungSchedule
from experiments_manager.sweeps.space import SearchSpace
from experiments_manager.sweeps.steps import Assignment, NothingLeft
from experiments_manager.sweeps.store import SweepStore, worker_identity
from experiments_manager.sweeps.sampler import SeededSuggestions
from experiments_manager.sweeps.trial_state import TrialState
from experiments_manager.utils.errors import UserInputError

SPACE = {"learningRate": hp.loguniform("learningRate", -9, -2)}


def test_rungs_of_asha_and_hyperband_end_at_the_maximum():
    assert RungSchedule("asha", 9).rungs() == [1, 3, 9]
    assert RungSchedule("asha", 10, eta=3, min_epochs=2).rungs() == [2, 6, 10]
    hyperband = RungSchedule("hyperband", 27)
    assert [hyperband.rungs(b) for b in range(hyperband.brackets())] == [[1, 3, 9, 27], [3, 9, 27], [9, 27], [27]]
    assert [hyperband.first_epochs(tid) for tid in range(5)] == [1, 3, 9, 27, 1]  # brackets in turn
    assert RungSchedule.checked("none", 9) is None


@pytest.mark.parametrize("arguments, expected", [
    (("asha", 9, 1), "--eta: expected an int >= 2, got 1"),
    (("asha", 9, 3, 9), "--min-epochs: expected fewer than the 9 epochs a trial trains in all (nbEpoch, or "
                        "--max-epochs), got 9"),
    (("fifo", 9), "--scheduler: expected one of none, asha, hyperband, got 'fifo'"),
])
def test_a_schedule_that_cannot_work_is_one_line(arguments, expected):
    with pytest.raises(UserInputError) as error:
        RungSchedule.checked(*arguments)
    assert error.value.problems == [expected]


def paused(tid, values, target=None, bracket=0):
    return TrialEntry(tid=tid, status=TrialState.PAUSED, bracket=bracket, rung_values={str(k): v for k, v in values.items()},
                      epochs_target=target or max(values))


def test_the_top_third_of_a_rung_is_promoted_from_the_highest_rung_down():
    schedule = RungSchedule("asha", 9)
    entries = [paused(tid, {1: 10.0 - tid}) for tid in range(5)]
    assert schedule.promotion(entries[:2]) is None  # floor(2 / 3) = 0: nobody yet
    entry, epochs = schedule.promotion(entries)
    assert (entry.tid, epochs) == (4, 3)  # the best of five: floor(5 / 3) = 1 promoted
    entries[4] = paused(4, {1: 6.0, 3: 2.0}, target=3)
    entries[4].status = TrialState.RUNNING  # promoted, training to 3 epochs: not promoted again
    entries += [paused(5, {1: 0.5})]
    assert schedule.promotion(entries)[0].tid == 5  # top 2 of 6: trial 5 (0.5), then 4 (done)
    entries[5] = paused(5, {1: 0.5, 3: 1.0})
    entries[4] = paused(4, {1: 6.0, 3: 2.0})
    entries += [paused(tid, {1: 20.0}) for tid in range(6, 9)]
    # rung 3 has two trials: floor(2 / 3) = 0; rung 1 has nine: the top 3 are 5, 4 (both on) and 3
    assert schedule.promotion(entries)[0].tid == 3
    assert schedule.promotion([paused(0, {1: math.nan}), paused(1, {1: 1.0}), paused(2, {1: 2.0})]) is None


def store_of(root, schedule, max_evals, joined=False):
    sweep = SweepFolder(root)
    if not joined:
        root.mkdir(parents=True, exist_ok=True)
        sweep.write_spec({"status": "running", "max_evals": max_evals, "space": {}, "trials_done": 0,
                          "scheduler": schedule.to_json()})
    space = SearchSpace(SPACE, {"learningRate": 0.01}, "settings.py")
    return SweepStore(sweep, space, SeededSuggestions("rand", 3), max_evals, "val_loss", schedule=schedule)


def loss_at(hparams, epochs):
    """A made-up loss: the point's quality plus a term that shrinks with training."""
    return abs(math.log(hparams["learningRate"]) + 5.0) + 4.0 / epochs


def train(step, die=False):
    """What a trial process and run_trial would record: trained to its target, its loss there."""
    target = step.entry.epochs_target
    if die:
        return
    step.record.update(status=TrialState.RUNNING)  # as run_trial records it as the trial starts, then as it ends
    step.record.update(status=TrialState.FINISHED, loss=loss_at(step.entry.hparams, target), best_value=0.0, best_epoch=1,
                       epochs_trained=target, experiment=f"/nowhere/{step.entry.number}")


def drive(root, schedule, max_evals, die_after_promoting=False, results=None):
    """Asks and tells from one process until nothing is left; returns (or puts in `results`) the assignments it
    got. With `die_after_promoting`, the process ends at its first promotion, holding the claim."""
    store = store_of(root, schedule, max_evals, joined=True)
    got = []
    while True:
        step = store.next_trial(worker_identity())
        if isinstance(step, NothingLeft):
            if step.running:
                time.sleep(0.05)  # another process trains one: ask again, as the worker loop does
                continue
            break
        got.append((step.entry.number, step.entry.epochs_target, step.promoted_to is not None,
                    step.taken_over is not None))
        if die_after_promoting and step.promoted_to is not None:
            results.put(got)
            results.close()
            results.join_thread()  # (what it put is sent before it dies)
            os._exit(0)  # holding the claim: its pid is gone, so the next ask takes it over
        train(step)
        store.record_result(step)
    if results is not None:
        results.put(got)
    return got


@pytest.mark.claim("ASHA's promotions through the shared state: each trial paused or promoted once per rung, the top "
                   "1/eta of each rung promoted, a promoting worker's death taken over")
def test_workers_asking_at_once_pause_and_promote_each_trial_once_per_rung(tmp_path):
    """A 12-trial ASHA sweep (eta 3, 1 -> 3 -> 9 epochs) driven through the store by processes: the first dies
    at its first promotion, holding the trial's claim; then two ask at once until the end, and one takes that
    trial over. Every trial trains its first rung once, each promotion happens once, and the top third of each
    rung was promoted."""
    schedule = RungSchedule("asha", 9)
    store_of(tmp_path, schedule, 12)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    got = []
    for wave in ([True], [False, False]):
        processes = [context.Process(target=drive, args=(tmp_path, schedule, 12, die, results)) for die in wave]
        for process in processes:
            process.start()
        got += [results.get(timeout=300) for _ in processes]
        for process in processes:
            process.join(timeout=60)
    assert got[0][-1][2], got[0]  # the first process ended at a promotion
    assignments = [assignment for worker in got for assignment in worker]
    store = store_of(tmp_path, schedule, 12, joined=True)
    entries = [entry for _, entry in store.journal.numbered()]
    assert len(entries) == 12 and all(entry.status in ("paused", "finished") for entry in entries), entries
    new = [number for number, _, promoted, taken in assignments if not promoted and not taken]
    assert sorted(new) == list(range(1, 13))  # each trial started once, at its first rung
    promotions = [(number, epochs) for number, epochs, promoted, _ in assignments if promoted]
    assert len(promotions) == len(set(promotions))  # once per rung
    assert sum(entry.promotions for entry in entries) == len(promotions)
    by_rung = {epochs: sorted((entry for entry in entries if str(epochs) in entry.rung_values),
                              key=lambda entry: entry.rung_values[str(epochs)]) for epochs in (1, 3)}
    assert len(by_rung[1]) == 12 and len(by_rung[3]) >= 4
    for epochs, reached in by_rung.items():  # (ASHA is asynchronous: an early promotion may fall out of the top)
        assert all(entry.rung > epochs for entry in reached[:len(reached) // 3]), (epochs, reached)
    assert any(taken for _, _, _, taken in assignments)  # the dead worker's promoted trial, taken over
    assert all(entry.epochs_trained == entry.rung for entry in entries)


@pytest.mark.claim("a raised `--max-epochs` on resume continues the best trials that finished",
                   note="(in the store, no training)")
def test_a_raised_maximum_continues_the_best_finished_trial(tmp_path):
    schedule = RungSchedule("asha", 3)
    store_of(tmp_path, schedule, 9)
    drive(tmp_path, schedule, 9)
    raised = RungSchedule("asha", 9)
    store = store_of(tmp_path, raised, 9, joined=True)
    with store.locked():
        assert store.reopen_finished(3) == 3  # the top third of nine reached 3 epochs
    step = store.next_trial(worker_identity())
    assert isinstance(step, Assignment) and step.promoted_to == 9
    best = min((entry for _, entry in store.journal.numbered() if entry.rung == 3),
               key=lambda entry: entry.rung_values["3"])
    assert step.entry.tid == best.tid
    spec = store.close(None)  # (a worker leaving while the promoted trial trains elsewhere)
    with open(tmp_path / "results.csv", newline="") as handle:
        rows = {int(row["trial"]): row for row in csv.DictReader(handle)}
    assert (rows[step.entry.number]["status"], rows[step.entry.number]["rung"]) == ("promoted", "3")
    assert {state["trial"]: state["status"] for state in spec["trials"]}[step.entry.number] == "promoted"
    assert len(rows) == 9 and spec["trials_done"] == 8 and spec["status"] == "running"


@pytest.mark.claim("the summary counts trials and the segments they took; a trial's line comes before the promotion "
                   "it allows", note="(the line is said under the sweep's lock: a promotion waits for the lock; the "
                                      "summary in test_sweep_scheduler.py)")
def test_a_trials_result_is_announced_before_another_worker_can_promote_it(tmp_path):
    """`record_result`'s announcement runs while the worker holds the sweep's lock, after the trial's value at its
    rung is recorded: a worker asking meanwhile (the only way to promote it) waits for it."""
    schedule = RungSchedule("asha", 9)
    store = store_of(tmp_path, schedule, 3)
    steps = [store.next_trial(worker_identity()) for _ in range(3)]
    for step in steps[:2]:
        train(step)
        store.record_result(step)
    train(steps[2])
    seen = []

    def announce(rows, best):
        held = (tmp_path / "sweep.lock").exists()
        seen.append((held, sorted(row["status"] for row in rows), best["trial"]))

    store.record_result(steps[2], announce)
    ((held, statuses, best),) = seen
    assert held and statuses == ["paused", "paused", "paused"]
    promoted = store.next_trial(worker_identity())
    assert promoted.promoted_to == 3 and promoted.entry.number == best  # the top third of three: the best
