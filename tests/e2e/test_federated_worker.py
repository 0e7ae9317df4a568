"""The SuperNode's persistent worker (experiments_manager/federated/supernode_worker.py, keeper.py) without a
federation: the worker protocol refuses frames over its size limit with a clear error, a client whose inputs do not
restart is built again each round, a reply the worker could not send is recorded as not answered, clients evaluate
exactly when the settings ask for it, and a kept client's round starts from the random state its session opened
with. The worker in a real deployed federation: test_federated_deployed.py.
"""

import socket
from pathlib import Path

import numpy as np
import pytest


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
