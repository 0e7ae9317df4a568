"""The SuperNode's persistent worker (experiments_manager/federated/supernode_worker.py, keeper.py): real SuperLink and
SuperNodes started through `experiments-manager federated superlink|supernode`, real `federated run`.

- rounds run in one worker per SuperNode (TensorFlow imported once, before round 1), the `flwr-clientapp`
  processes Flower starts for each message never load TensorFlow, one message per client and round;
- a worker killed (SIGKILL) in round 1: that round completes under minFit with the other client, the keeper starts
  the worker again and round 2 has both clients;
- the worker and its keeper go when the SuperNode stops (SIGTERM) or dies (SIGKILL), with their private folder;
- the worker protocol refuses frames over its size limit with a clear error;
- (no federation) a client whose inputs do not restart is built again each round, a reply the worker could not
  send is recorded as not answered, clients evaluate exactly when the settings ask for it, and a kept client's
  round starts from the random state its session opened with.
"""

import contextlib
import os
import shutil
import signal
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import FlowerFederation, REPO, cli_env, read_run, run_command, settings_variant, wait_for


FEDERATED_SETTINGS = "examples/federated/mysettings_federated_curve_fitting.py"
WORKING_FOLDER = "experiments/examples/federated_curve_fitting"
SLOW_CLIENT_1 = [  # client 1 starts each round's training 2 s late: a kill lands in the round
    "import time as _time",
    "def addon_callbacks(model, train_data, val_data):",
    "    class _SlowStart(tf.keras.callbacks.Callback):",
    "        def on_train_begin(self, logs=None):",
    "            if hparams['procID'] == 1:",
    "                _time.sleep(2)",
    "    return [_SlowStart()]",
]


def _processes():
    """pid -> (ppid, name) of every process, from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        found[int(stat.parent.name)] = (int(rest[1]), name)
    return found


def descendants(pid, processes=None):
    processes = processes if processes is not None else _processes()
    children = {}
    for child, (parent, _) in processes.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def parent_of(pid):
    """The pid of process `pid`'s parent, from /proc."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def loads_tensorflow(pid):
    """True when process `pid` has TensorFlow's native libraries mapped (it imported tensorflow)."""
    try:
        return "tensorflow" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return None


def worker_folder(supernode):
    """The worker folder `federated supernode` gave its SuperNode (and so its ClientApps), from /proc."""
    from experiments_manager.federated.worker_protocol import FOLDER_VARIABLE

    pairs = Path(f"/proc/{supernode.pid}/environ").read_bytes().decode(errors="replace").split("\0")
    environment = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
    return Path(environment[FOLDER_VARIABLE])


def ready_status(folder, timeout=180):
    """The worker's status once it has imported TensorFlow."""
    from experiments_manager.federated.worker_protocol import read_status

    return wait_for(lambda: (status := read_status(folder)) and status.get("tensorflow_imported") and status,
                    timeout, f"the worker in {folder} ready")


def served(folder, run_id):
    from experiments_manager.federated.worker_protocol import read_status

    return [entry for entry in (read_status(folder) or {}).get("served", []) if str(entry["run_id"]) == str(run_id)]


class ClientAppWatch:
    """Samples the `flwr-clientapp` processes under the SuperNodes while a federation runs: whether each one had
    TensorFlow mapped, seen last before it exited."""

    def __init__(self, supernodes):
        self.roots = [process.pid for process in supernodes]
        self.seen = {}  # pid -> loads_tensorflow at the last sample
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()

    def _watch(self):
        while not self.stopped.wait(0.05):
            processes = _processes()
            for root in self.roots:
                for pid in descendants(root, processes):
                    if "clientapp" in processes[pid][1]:
                        mapped = loads_tensorflow(pid)
                        if mapped is not None:
                            self.seen[pid] = mapped


def federated_run(federation, settings, *hparams, rounds=2):
    """Runs `federated run` on the federation; returns (CompletedProcess, the server experiment folder)."""
    earlier = set(federation.workdir.glob(f"{WORKING_FOLDER}/*/run.json"))
    arguments = [f"--hparam={item}" for item in ("nbEpoch=1", *hparams)]
    result = run_command(["federated", "run", "-u", str(settings), "--superlink", federation.address,
                          "--rounds", str(rounds), "--round-timeout", "120", *arguments],
                         cwd=federation.workdir, env=cli_env(), capture_output=True, text=True, timeout=400)
    (server,) = set(federation.workdir.glob(f"{WORKING_FOLDER}/*/run.json")) - earlier
    return result, server.parent


@contextlib.contextmanager
def started_federation(root):
    """A SuperLink and two SuperNodes in `root`, their workers ready (stopped on exit)."""
    shutil.copytree(REPO / "examples", root / "examples")
    federation = FlowerFederation(root, root / "flwr_home")
    try:
        federation.start(num_nodes=2)
        federation.folders = [worker_folder(node) for node in federation.supernodes]
        for folder in federation.folders:
            ready_status(folder)
        yield federation
    finally:
        federation.stop()


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    """The federation this file's federated runs share (no test stops it)."""
    with started_federation(tmp_path_factory.mktemp("worker_federation")) as federation:
        yield federation


@pytest.fixture
def own_federation(tmp_path):
    """A federation of the test's own, for a test that stops its SuperNodes."""
    with started_federation(tmp_path) as federation:
        yield federation


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.claim(
    "`federated supernode` starts a persistent worker: TensorFlow imported once per SuperNode, the run's client "
    'kept from round to round',
    note='(same worker pid across rounds)')
@pytest.mark.claim(
    "Flower's per-message ClientApp processes never load TensorFlow",
    note="(the worker's record of each ClientApp and /proc/<pid>/maps, sampled every 50 ms)")
@pytest.mark.claim(
    'clients evaluate only when the settings ask (`minEval`, or `fraction_evaluate > 0`); otherwise one message '
    'per client and round',
    note='(requests are `train` only)')
def test_rounds_run_in_one_persistent_worker_per_supernode_and_clientapps_never_load_tensorflow(federation):
    before = [ready_status(folder) for folder in federation.folders]
    with ClientAppWatch(federation.supernodes) as watch:
        result, server = federated_run(federation, FEDERATED_SETTINGS)  # neither minEval nor fraction_evaluate
    assert result.returncode == 0, result.stdout + result.stderr
    run = read_run(server)
    assert run["status"] == "finished" and run["rounds_completed"] == 2, run
    assert run["federated"]["client_evaluation"] is False
    print(f"round timings: {run['round_timings']}; clientapps seen: {watch.seen}")
    for index, (node, folder, status) in enumerate(zip(federation.supernodes, federation.folders, before)):
        worker = status["pid"]
        assert alive(worker) and loads_tensorflow(worker)  # the worker, and only it, holds TensorFlow
        assert parent_of(parent_of(worker)) == node.pid  # SuperNode -> keeper -> worker
        requests = served(folder, run["flower_run_id"])
        assert [(entry["kind"], entry["round"]) for entry in requests] == [("train", 1), ("train", 2)]
        assert all(entry["answered"] for entry in requests)
        clientapps = [entry["clientapp"] for entry in requests]
        assert not any(clientapp["tensorflow"] for clientapp in clientapps), clientapps
        assert len({clientapp["pid"] for clientapp in clientapps}) == 2  # Flower's new process per message ...
        assert ready_status(folder)["pid"] == worker  # ... all served by the worker that was ready before round 1
        # run.json's `started` is to the second: a run started within the second the worker finished importing
        # (the command itself now starts in a moment: tests/warm_cli.py) is still after it
        assert int(status["tensorflow_imported"]) <= run_started(run)
        client = read_run(server / "clients" / f"client_{index}")
        assert client["epochs_completed"] == 2 and client["last_round"]["round"] == 2
    assert watch.seen, "no flwr-clientapp process seen"
    assert not any(watch.seen.values()), watch.seen  # none had TensorFlow's libraries mapped


def run_started(run):
    from datetime import datetime

    assert "started" in run, run  # no start time: the comparison must fail, not pass against infinity
    return datetime.fromisoformat(run["started"]).timestamp()


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.claim(
    "a worker that dies in a round fails that client's round (the federation goes on under `minFit`) and is "
    'started again for the next round')
def test_a_worker_killed_in_a_round_fails_only_that_round_and_is_started_again(federation):
    settings = settings_variant(federation.workdir, "slow_client_1.py", SLOW_CLIENT_1, base=FEDERATED_SETTINGS)
    folder = federation.folders[1]
    killed = {}

    def kill_in_round_1():
        from experiments_manager.federated.worker_protocol import read_status

        def busy_in_round_1():
            status = read_status(folder) or {}
            return (status.get("busy") or {}).get("round") == 1 and status

        status = wait_for(busy_in_round_1, 300, "client 1's worker busy in round 1")
        killed.update(pid=status["pid"], keeper=parent_of(status["pid"]))
        os.kill(status["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_in_round_1, daemon=True)
    killer.start()
    result, server = federated_run(federation, settings, "minFit=1")
    killer.join(timeout=5)
    assert result.returncode == 0, result.stdout + result.stderr
    assert killed, "the worker was never seen busy in round 1"
    run = read_run(server)
    assert run["status"] == "finished" and run["rounds_completed"] == 2, run
    survivor, victim = (read_run(server / "clients" / f"client_{index}") for index in (0, 1))
    assert survivor["epochs_completed"] == 2
    assert victim["epochs_completed"] == 1 and victim["last_round"]["round"] == 2  # round 2 only
    restarted = ready_status(folder)
    assert restarted["pid"] != killed["pid"] and not alive(killed["pid"])
    assert parent_of(restarted["pid"]) == killed["keeper"]  # the same keeper started it again
    requests = [(entry["round"], entry["answered"]) for entry in served(folder, run["flower_run_id"])]
    assert requests == [(2, True)], requests  # the new worker's requests: round 2 (round 1 died with the old one)
    log = (server / "flower_server.log").read_text()
    assert "closed the connection before answering" in log, log[-3000:]  # the ClientApp's error reached the server


@pytest.mark.claim("the worker's messages are bounded, with a clear error")
def test_the_worker_protocol_refuses_frames_over_its_limit_with_a_clear_error():
    from experiments_manager.federated.worker_protocol import WorkerError, receive_frame, send_frame

    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([7], dtype=np.int64)]
    sender, receiver = socket.socketpair()
    with sender, receiver:
        send_frame(sender, {"kind": "train"}, arrays)
        header, received = receive_frame(receiver)
        assert header == {"kind": "train"}
        for sent, got in zip(arrays, received):
            np.testing.assert_array_equal(sent, got)
            assert sent.dtype == got.dtype
        with pytest.raises(WorkerError, match="a message of 32 bytes of arrays is over the limit of 16 bytes"):
            send_frame(sender, {}, arrays, max_bytes=16)
        send_frame(sender, {}, arrays)
        with pytest.raises(WorkerError, match=r"a frame of \d+ \+ 32 bytes is over the limits of"):
            receive_frame(receiver, max_bytes=16)
    sender, receiver = socket.socketpair()
    with sender, receiver:
        sender.sendall(b"GET / HTTP/1.1\r\n\r\n")
        with pytest.raises(WorkerError, match="not a worker frame"):
            receive_frame(receiver)


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.claim(
    'stopping the SuperNode (Ctrl-C, SIGTERM) or its death stops the worker; its folder is private',
    note='(SIGTERM and SIGKILL; SIGINT not tested separately)')
def test_the_worker_and_its_keeper_go_with_the_supernode(own_federation):
    """SuperNode 0 stopped with SIGTERM, SuperNode 1 killed with SIGKILL (only the SuperNode's pid, not its
    process group): each one's keeper stops its worker and removes the private folder."""
    nodes = own_federation.supernodes
    folders = own_federation.folders
    workers = [ready_status(folder)["pid"] for folder in folders]
    keepers = [parent_of(worker) for worker in workers]
    assert [parent_of(keeper) for keeper in keepers] == [node.pid for node in nodes]
    assert all(oct(folder.stat().st_mode & 0o777) == "0o700" for folder in folders)  # private
    nodes[0].send_signal(signal.SIGTERM)
    nodes[1].send_signal(signal.SIGKILL)
    for node in nodes:
        node.wait(timeout=30)
    wait_for(lambda: not any(alive(pid) for pid in workers + keepers), 30, "workers and keepers gone")
    wait_for(lambda: not any(folder.exists() for folder in folders), 10, "worker folders removed")


@pytest.mark.parametrize("keepable, built", [(True, 1), (False, 2)])
@pytest.mark.claim(
    'a client is rebuilt every round when a pipeline cannot restart (a Keras 2 generator)',
    note='(weak: a fake client, no federation)')
def test_the_worker_keeps_a_client_across_rounds_only_when_its_inputs_restart(monkeypatch, tmp_path, keepable, built):
    """A client on a Keras 2 generator (not restartable) is built again for round 2, as a fresh process would."""
    from experiments_manager.federated import federated_client as client_module
    from experiments_manager.federated.job import FederatedJob
    from experiments_manager.federated.supernode_worker import Worker

    clients = []

    class FakeClient:
        def __init__(self, job, partition):
            self.keep_across_rounds, self.closed = keepable, False
            clients.append(self)

        def close(self):
            self.closed = True

    monkeypatch.setattr(client_module, "FederatedClient", FakeClient)
    monkeypatch.setattr(FederatedJob, "from_run_config", staticmethod(lambda run_config, app_dir: None))
    worker = Worker(tmp_path)
    header = {"run_id": 1, "run_config": {}, "app_dir": "app", "node_config": {"partition-id": 0, "num-partitions": 2}}
    assert worker._client_for(header) is clients[0]
    assert worker._client_for(header) is clients[-1]  # round 2
    assert len(clients) == built
    assert clients[0].closed is not keepable


@pytest.mark.claim("the worker's messages are bounded, with a clear error")
def test_the_worker_records_a_reply_it_could_not_send_as_not_answered(monkeypatch, tmp_path):
    from experiments_manager.federated.supernode_worker import Worker
    from experiments_manager.federated.worker_protocol import read_status, send_frame

    worker = Worker(tmp_path)
    monkeypatch.setattr(worker, "_answer", lambda header, arrays: {"metrics": {}})
    served_end, asking_end = socket.socketpair()
    with served_end:
        with asking_end:
            send_frame(asking_end, {"kind": "evaluate", "run_id": 1, "config": {"server-round": 1}})
        worker._serve_one(served_end)  # the ClientApp is gone: the reply cannot be sent
    (entry,) = read_status(tmp_path)["served"]
    assert entry["answered"] is False


@pytest.mark.claim(
    'clients evaluate only when the settings ask (`minEval`, or `fraction_evaluate > 0`); otherwise one message '
    'per client and round')
def test_clients_evaluate_exactly_when_the_settings_ask_for_it():
    """`minEval` (the original framework's clients evaluated: all of them, at least minEval) or fraction_evaluate > 0;
    neither, or fraction_evaluate = 0: the server's evaluation only, one message per client and round."""
    import types

    from experiments_manager.federated.federation_config import FederationConfig
    from experiments_manager.federated.federation_server import supervised_strategy

    def config(**hparams):
        settings = types.SimpleNamespace(experiment=types.SimpleNamespace(hparams={"minCl": 2, **hparams}),
                                         path=Path("s.py"), federated=types.SimpleNamespace(round_timeout_secs=60),
                                         overrides={}, unknown_overrides=frozenset())
        return FederationConfig.from_settings(settings)

    def evaluating(**hparams):
        chosen = config(**hparams)
        strategy = supervised_strategy(chosen, types.SimpleNamespace())
        return chosen.client_evaluation, strategy.fraction_evaluate, strategy.min_evaluate_nodes

    assert evaluating() == (False, 1.0, 2)  # Flower's own default fraction is never used: configure_evaluate skips
    assert evaluating(minEval=1) == (True, 1.0, 1)
    assert evaluating(minEval=1, fraction_evaluate=0.5) == (True, 0.5, 1)
    assert evaluating(minEval=1, fraction_evaluate=0.0) == (False, 0.0, 0)  # Flower itself zeroes min_evaluate_nodes
    assert evaluating(fraction_evaluate=0.25) == (True, 0.25, 2)
    assert "server-side evaluation only" in config().describe() and "minEval" not in config().describe()  # unset
    assert "clients evaluate too" in config(minEval=2).describe() and "minEval=2" in config(minEval=2).describe()


@pytest.mark.claim(
    'the random state is restored each round as a fresh process would have it',
    note='(Dropout masks, Python and NumPy draws; weak: tf.data shuffle order is not restored)')
def test_a_kept_clients_round_starts_from_the_random_state_its_session_opened_with():
    """Dropout masks, Python's and NumPy's draws of round 2 repeat those of round 1, as in a fresh process."""
    import random

    import keras

    from experiments_manager.federated.federated_client import RandomState

    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dropout(0.5)])
    state = RandomState(7, model)

    def draws():
        return (np.asarray(model(np.ones((4, 64), np.float32), training=True)), random.random(), np.random.rand())

    first = draws()
    state.restore()
    second = draws()
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1:] == second[1:]
