"""The shared state of a sweep run by workers (`sweeps/store.py`), without training: many processes asking and
telling at once, the short lock and the claims of workers that are gone, and suggestions equal to a sequential
hyperopt sweep's. The workers' real trials (processes, Slurm) are in test_sweep.py and test_slurm.py."""

import json
import math
import multiprocessing
import os
import queue
import socket
import subprocess
import sys
import time

import pytest
from hyperopt import hp

from experiments_manager.sweeps import store as store_module
from experiments_manager.sweeps.folder import SweepFolder
from experiments_manager.sweeps.journal import TrialEntry
from experiments_manager.sweeps.space import SearchSpace
from experiments_manager.sweeps.steps import Assignment, NothingLeft
from experiments_manager.sweeps.store import SweepStore, worker_identity
from experiments_manager.sweeps.sampler import SeededSuggestions, hyperopt_trials
from experiments_manager.utils.lease import LeaseHeld
from experiments_manager.utils.lease_holder import Holder

SPACE = {"learningRate": hp.loguniform("learningRate", -9, -2), "hiddenNeurons": hp.quniform("hiddenNeurons", 4, 64, 4),
         "activation": hp.choice("activation", ["relu", "tanh"])}


def space():
    return SearchSpace(SPACE, {"learningRate": 0.01, "hiddenNeurons": 16, "activation": "relu"}, "settings.py")


def loss_of(hparams):
    """A made-up validation loss with a minimum near learningRate 0.005, 32 neurons, tanh."""
    return ((math.log(hparams["learningRate"]) + 5.3) ** 2 + (hparams["hiddenNeurons"] - 32) ** 2 / 200
            + (0.3 if hparams["activation"] == "relu" else 0.0))


def new_store(root, algo="tpe", seed=7, max_evals=30, startup=None, joined=False, schedule=None):
    sweep = SweepFolder(root)
    if not joined:
        root.mkdir(parents=True, exist_ok=True)
        sweep.write_spec({"status": "running", "max_evals": max_evals, "space": {}, "trials_done": 0})
    return SweepStore(sweep, space(), SeededSuggestions(algo, seed, startup_trials=startup), max_evals, "val_loss",
                      schedule=schedule)


def tell(store, step, loss):
    step.record.update(status="running")  # what run_trial records as the trial starts, then as it ends
    step.record.update(status="finished", best_value=loss, best_epoch=1, loss=loss, seconds=0.0,
                       experiment=f"/nowhere/trial-{step.entry.number}")
    return store.record_result(step)


@pytest.mark.claim(
    'one worker suggests the points of the sequential sweep for the same seed; running trials count as worst; '
    "TPE's start-up >= 2 x workers",
    note="(26 trials, past TPE's start-up)")
def test_one_worker_suggests_the_points_of_todays_sequential_sweep(tmp_path):
    """The same seed gives the same trials, point for point, as hyperopt's fmin with the sequential sweep's
    algorithm, past TPE's 20 random start-up trials; and the same results.csv values."""
    from hyperopt import Trials, fmin
    import numpy as np

    seed = 7
    print("sweep seed:", seed)
    sequential = []

    def objective(sample):
        hparams = space().hparams_for(sample)
        sequential.append(hparams)
        return {"status": "ok", "loss": loss_of(hparams)}

    fmin(objective, SPACE, algo=SeededSuggestions("tpe", seed), max_evals=26, trials=Trials(),
         rstate=np.random.default_rng(seed), show_progressbar=False)

    store = new_store(tmp_path / "sweep", seed=seed, max_evals=26, startup=20)
    worker = worker_identity()
    ours = []
    while not isinstance(step := store.next_trial(worker), NothingLeft):
        ours.append(step.entry.hparams)
        tell(store, step, loss_of(step.entry.hparams))
    assert ours == sequential
    rows, best = store.record_rows()
    assert [row["trial"] for row in rows] == list(range(1, 27))
    assert best["loss"] == min(loss_of(hparams) for hparams in sequential)


WRITERS, ROUNDS = 8, 25  # 8 processes at once on 2 cores, 200 records (8 x 50: 56 CPU-s in the suite, twice this)
TRIALS = WRITERS * ROUNDS


def _ask_and_tell(root, count, results):
    """One worker process: `count` ask/tell rounds with no pause, then the trial numbers it got."""
    store = new_store(root, algo="rand", max_evals=TRIALS, joined=True)
    worker = worker_identity()
    numbers = []
    for _ in range(count):
        step = store.next_trial(worker)
        assert isinstance(step, Assignment), step
        tell(store, step, loss_of(step.entry.hparams))
        numbers.append(step.entry.number)
    results.put(numbers)


@pytest.mark.slow
@pytest.mark.claim(
    'the shared state is safe with many writers: no record lost or duplicated',
    note='(8 processes x 25 ask/tell)')
def test_eight_processes_asking_and_telling_at_once_lose_and_duplicate_nothing(tmp_path):
    root = tmp_path / "sweep"
    new_store(root, algo="rand", max_evals=TRIALS)
    # spawned, not forked: a fork of this pytest worker copies the locks of threads an earlier test left in it
    # (gRPC's, asyncio's), and a child can wait on one forever (CI hung here once)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_ask_and_tell, args=(root, ROUNDS, results)) for _ in range(WRITERS)]
    for process in processes:
        process.start()
    got = []
    deadline = time.monotonic() + 600
    while len(got) < len(processes):
        assert time.monotonic() < deadline, f"{len(got)} of {len(processes)} workers answered in 600 s"
        failed = [process.exitcode for process in processes if process.exitcode not in (None, 0)]
        assert not failed, f"a worker process failed: exit codes {failed}"
        try:
            got.append(results.get(timeout=1))
        except queue.Empty:
            continue
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    numbers = sorted(number for numbers in got for number in numbers)
    assert numbers == list(range(1, TRIALS + 1)), "every trial number given out once"
    records = sorted((root / "trials").glob("trial-*.json"))
    assert len(records) == TRIALS and not list((root / "trials").glob("*.lock"))
    entries = [TrialEntry.from_json(json.loads(path.read_text())) for path in records]
    assert all(entry.status == "finished" and entry.loss == loss_of(entry.hparams) for entry in entries)
    store = new_store(root, algo="rand", max_evals=TRIALS)
    assert isinstance(store.next_trial(worker_identity()), NothingLeft)
    rows, _ = store.record_rows()
    assert len(rows) == TRIALS
    assert not list(root.glob(".*tmp")) and not (root / "sweep.lock").exists()


def _write_holder(path, **fields):
    holder = Holder.of_this_process()
    for name, value in fields.items():
        setattr(holder, name, value)
    path.write_text(json.dumps(holder.__dict__))


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.claim("the short lock of a gone holder is broken, a live holder's never")
def test_the_short_lock_of_a_gone_holder_is_broken_and_a_live_holders_never(tmp_path, monkeypatch):
    store = new_store(tmp_path / "sweep", algo="rand", max_evals=3)
    lock = store.sweep.root / store_module.LOCK_NAME
    worker = worker_identity()

    _write_holder(lock, pid=_dead_pid())  # a worker killed while it held the lock, on this node
    assert isinstance(store.next_trial(worker), Assignment)

    monkeypatch.setattr(store_module, "LOCK_TIMEOUT_SECONDS", 1.0)
    old = time.time() - 65
    _write_holder(lock, host="node-that-died", boot_id="b", heartbeat=old, timeout_seconds=1.0)
    started = time.monotonic()
    assert isinstance(store.next_trial(worker), Assignment), "another node's lock, its heartbeat standing still"
    assert time.monotonic() - started >= 1.0, "taken over only after watching it for the timeout"

    monkeypatch.setattr(store_module, "LOCK_PATIENCE_SECONDS", 1.0)
    _write_holder(lock, host="busy-node", boot_id="b", heartbeat=time.time(), timeout_seconds=60.0)
    with pytest.raises(LeaseHeld, match="busy-node"):
        store.next_trial(worker)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # alive on this node: never broken, however old its heartbeat
        _write_holder(lock, pid=sleeper.pid, process_start=None, heartbeat=old)
        with pytest.raises(LeaseHeld, match=f"pid {sleeper.pid}"):
            store.next_trial(worker)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert isinstance(store.next_trial(worker), Assignment)


@pytest.mark.claim('a trial whose worker is gone is taken over and continues from its checkpoint')
def test_a_trial_whose_worker_is_gone_is_taken_over_first_and_a_live_workers_is_not(tmp_path):
    store = new_store(tmp_path / "sweep", algo="rand", max_evals=2)
    worker = worker_identity()
    first = store.next_trial(worker)
    second = store.next_trial(worker)
    assert (first.entry.number, second.entry.number) == (1, 2)
    assert isinstance(store.next_trial(worker), NothingLeft)  # both claimed by this live process

    second.record.release()  # its worker, killed: a claim naming a dead pid is left behind
    _write_holder(second.record.lock_path, pid=_dead_pid())
    second.record.update(experiment="/somewhere/trial-2")
    taken = store.next_trial({**worker, "worker": 2})
    assert isinstance(taken, Assignment) and taken.entry.number == 2
    assert taken.taken_over.startswith("its worker") and "is gone" in taken.taken_over
    # the record's experiment is read as a name in the sweep's folder: a path elsewhere is never resumed or written
    assert taken.entry.takeovers == 1 and taken.entry.experiment == str((tmp_path / "sweep").resolve() / "trial-2")
    assert taken.entry.worker["worker"] == 2

    store.give_back(taken)  # stopped by a signal: interrupted, its claim released at once
    taken.record.update(status="interrupted")
    again = store.next_trial(worker)
    assert again.entry.number == 2 and again.taken_over == "it was interrupted"
    tell(store, again, 1.0)
    tell(store, first, 2.0)
    assert isinstance(store.next_trial(worker), NothingLeft)
    spec = store.close(None)
    assert spec["status"] == "finished" and spec["trials_done"] == 2 and spec["best"]["trial"] == 2


@pytest.mark.claim('a trial whose worker is gone is taken over and continues from its checkpoint')
def test_a_trial_whose_worker_died_between_its_rung_and_its_tell_is_settled_not_trained_again(tmp_path):
    from experiments_manager.sweeps.scheduler import RungSchedule
    from experiments_manager.sweeps.trial_state import TrialState

    store = new_store(tmp_path / "sweep", algo="rand", max_evals=1, schedule=RungSchedule("asha", 9))
    worker = worker_identity()
    trial = store.next_trial(worker)
    assert trial.entry.epochs_target == 1
    trial.record.update(status="running")  # trained to its first rung, then its worker was killed before the tell
    trial.record.update(status="finished", best_value=0.5, best_epoch=1, loss=0.5, seconds=1.0, epochs_trained=1,
                        experiment="/nowhere/trial-1")
    trial.record.release()
    _write_holder(trial.record.lock_path, pid=_dead_pid())
    assert trial.record.entry().rung_value_pending

    after = store.next_trial({**worker, "worker": 2})  # settled: paused at rung 1 with its value (its tell's fields)
    settled = trial.record.entry()
    assert settled.status is TrialState.PAUSED and settled.rung_values == {"1": 0.5} and settled.takeovers == 0
    assert after == NothingLeft(done=1, running=0, watching=0)  # (the top third of one trial: none promoted)


@pytest.mark.claim(
    'one worker suggests the points of the sequential sweep for the same seed; running trials count as worst; '
    "TPE's start-up >= 2 x workers")
def test_running_trials_count_as_the_worst_for_tpe_and_start_up_spreads_over_workers(tmp_path):
    from experiments_manager.sweeps.sampler import startup_trials

    assert startup_trials(100, 1) == 20 and startup_trials(12, 2) == 4 and startup_trials(1000, 32) == 64
    store = new_store(tmp_path / "sweep", max_evals=5)
    worker = worker_identity()
    running = store.next_trial(worker)
    finished = store.next_trial(worker)
    tell(store, finished, 0.5)
    trials = hyperopt_trials(store.journal.numbered(), with_running=True)
    states = {doc["tid"]: (doc["state"], doc["result"].get("loss")) for doc in trials.trials}
    assert states == {running.entry.tid: (1, None), finished.entry.tid: (2, 0.5)}  # RUNNING without a loss, DONE
    assert socket.gethostname() == running.entry.worker["host"] and running.entry.worker["pid"] == os.getpid()


def test_a_sweep_folder_of_the_previous_engine_is_joined_without_training_a_finished_trial_again(tmp_path):
    """The previous engine (one process; records keyed by hparams; trials.pickle saved after each trial) was killed
    after trial 3 finished but before its pickle was saved, with trial 4 interrupted: workers import trials 1-2
    from the pickle, take trial 3's result from its record, and continue trial 4's experiment."""
    from hyperopt import Trials

    from experiments_manager.sweeps.journal import TrialRecord, hparams_key
    from experiments_manager.sweeps.sampler import result_of
    from experiments_manager.sweeps.trials_pickle import save_trials

    root = tmp_path / "sweep"
    store = new_store(root, algo="rand", max_evals=5)
    points = [store.sampler.suggest(tid, [])[0] for tid in range(4)]  # rand: each trial's point from its id alone
    trials, docs = Trials(), []
    for tid, hparams in enumerate(points):
        experiment = root / f"trial_{tid + 1}"
        experiment.mkdir()
        status = "finished" if tid < 3 else "interrupted"
        (experiment / "run.json").write_text(json.dumps({"status": status, "best_value": loss_of(hparams),
                                                         "best_epoch": 2, "monitored_loss_name": "val_loss"}))
        TrialRecord(root / "trials" / f"{hparams_key(hparams)}.json", hparams).update(
            status=status, experiment=str(experiment), best_value=loss_of(hparams), best_epoch=2, seconds=1.0)
        if tid < 2:
            entry = TrialEntry(hparams=hparams, tid=tid, status="finished", experiment=str(experiment),
                               loss=loss_of(hparams), best_value=loss_of(hparams), best_epoch=2, seconds=1.0,
                               vals=store.sampler.suggest(tid, [])[1])
            (doc,) = trials.new_trial_docs([tid], [None], [result_of(entry)], [
                {"tid": tid, "cmd": None, "workdir": None, "vals": entry.vals,
                 "idxs": {name: [tid] for name in entry.vals}}])
            doc["state"] = 2
            docs.append(doc)
    trials.insert_trial_docs(docs)
    trials.refresh()
    save_trials(trials, store.sweep.trials_file)

    from experiments_manager.sweeps.legacy import import_finished

    store = new_store(root, algo="rand", max_evals=5, joined=True)  # a worker opens the sweep: its records read once
    assert import_finished(store.sweep, store.journal, store.locked) == 2  # once:
    assert import_finished(store.sweep, store.journal, store.locked) == 0
    step = store.next_trial(worker_identity())
    assert isinstance(step, Assignment) and step.entry.number == 4, "trial 3 was not trained again"
    assert step.entry.experiment == str(root / "trial_4"), "trial 4 continues its experiment"
    third = {entry.tid: entry for _, entry in store.journal.numbered()}[2]
    assert third.status == "finished" and third.loss == loss_of(points[2]) and third.experiment == str(root / "trial_3")
    rows, best = store.record_rows()
    assert [row["trial"] for row in rows] == [1, 2, 3] and best["loss"] == min(loss_of(p) for p in points[:3])


@pytest.mark.claim("a damaged trial record is named in one line: restored from trials.pickle when it was done, else "
                   "its trial trained again under its own number; the total is never overrun")
def test_a_damaged_trial_record_is_named_restored_or_retrained_under_its_number(tmp_path, caplog):
    store = new_store(tmp_path / "sweep", algo="rand", max_evals=4)
    worker = worker_identity()
    for _ in range(3):
        step = store.next_trial(worker)
        tell(store, step, loss_of(step.entry.hparams))
    fourth = store.next_trial(worker)
    assert fourth.entry.number == 4
    store.give_back(fourth)  # its worker stopped; its record then lost power: zeros
    records = store.sweep.trials_dir
    finished = (records / "trial-0002.json").read_text()
    (records / "trial-0002.json").write_text('{"hparams": {"learningRa')  # overwritten by hand, cut short
    (records / "trial-0004.json").write_bytes(b"\0" * 64)

    store = new_store(tmp_path / "sweep", algo="rand", max_evals=4, joined=True)  # a resume, a worker joining
    with caplog.at_level("WARNING", logger="experiments_manager"):
        again = store.next_trial(worker)
    lines = [record.getMessage() for record in caplog.records if "damaged" in record.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{records / 'trial-0002.json'}: damaged (not JSON): restored from trials.pickle "
                               "(finished, loss ")
    assert lines[1].startswith(f"{records / 'trial-0004.json'}: damaged (NUL bytes, as after a power loss) and not "
                               "finished in trials.pickle: trial 4 is trained again under its number")
    assert json.loads((records / "trial-0002.json").read_text())["loss"] == json.loads(finished)["loss"]
    assert isinstance(again, Assignment) and again.entry.number == 4 and again.taken_over is None
    assert (records / "trial-0004.json.damaged").read_bytes() == b"\0" * 64
    rows, _ = tell(store, again, 0.5)
    assert sorted(row["trial"] for row in rows) == [1, 2, 3, 4]
    assert store.next_trial(worker) == NothingLeft(done=4, running=0)
    assert len(store.sweep.results_csv.read_text().strip().splitlines()) == 1 + 4  # the header, a row per trial


@pytest.mark.claim("a resume's new choices (more trials) are never undone by workers rewriting sweep.json from a "
                   "stale read", note="(sweep.json put back as it was before the resume: what a stale read returns)")
def test_a_stale_sweep_json_does_not_undo_a_resumes_choices(tmp_path):
    """A resume raises the total and accepts new code; a worker's rewrite of sweep.json from the content before the
    resume (what a node whose cache is behind reads) keeps both, and the next resume's choices go over them."""
    sweep = SweepFolder(tmp_path / "sweep")
    store = new_store(sweep.root, max_evals=8)
    before = sweep.spec_file.read_text()
    with store.locked():
        sweep.update_spec(max_evals=12, code={"settings.py": "new"})
    sweep.spec_file.write_text(before)  # what a stale read gives: sweep.json as it was
    assert store.total() == 12
    with store.locked():
        sweep.update_spec(trials_done=3, status="running")  # a worker's tell, from that stale read
    written = json.loads(sweep.spec_file.read_text())
    assert (written["max_evals"], written["code"], written["trials_done"]) == (12, {"settings.py": "new"}, 3)
    sweep.spec_file.write_text(before)
    with store.locked():
        sweep.update_spec(max_evals=20)  # the next resume, from a stale read: the accepted code stays
    assert {key: sweep.spec()[key] for key in ("max_evals", "code")} == {"max_evals": 20,
                                                                          "code": {"settings.py": "new"}}
    assert sorted(path.name for path in (sweep.root / "choices").iterdir()) == ["0001.json", "0002.json"]
