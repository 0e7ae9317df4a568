"""Federated claims of the docs (docs/how-to/federated.md) that had no test: the strategies and their parameters,
`nonIID=True` partitions, Kafka input refused, and which weights a client sends back (the wait for `minCl` clients
timing out and what the `federated superlink` / `supernode` wrappers start: test_federated_deployed.py).

Real parts only: settings files executed in-process, and Flower's simulation engine.
"""

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import read_run, settings_variant, single_experiment


FEDERATED_SETTINGS = "examples/federated/mysettings_federated_curve_fitting.py"
WORKING_FOLDER = "experiments/examples/federated_curve_fitting"


def load(path, overrides=None):
    from experiments_manager.settings import load_settings

    return load_settings(str(path), overrides or {})


# --- strategies selected by the settings, with their parameters -------------------------------------------------

STRATEGIES = {
    "FedAdam": {"eta": 0.05, "eta_l": 0.02, "beta_1": 0.8, "beta_2": 0.95, "tau": 1e-6},
    "FedYogi": {"eta": 0.02, "eta_l": 0.005, "beta_1": 0.7, "beta_2": 0.9, "tau": 1e-4},
    "FedAvgM": {"server_learning_rate": 0.5, "server_momentum": 0.9},
    "FedMedian": {"fraction_train": 0.5, "fraction_evaluate": 0.25},
    "Krum": {"num_malicious_nodes": 1},
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.claim('FedAdam, FedYogi, FedAvgM, FedMedian, Krum with their parameters (`eta`, ...)')
def test_the_strategy_named_in_the_settings_gets_its_parameters(workdir, name):
    """A settings file naming a strategy and setting hparams named like its parameters: the strategy object the
    server runs (`supervised_strategy`, as `run_federation` builds it) is that Flower class with those values."""
    import types

    from flwr.serverapp import strategy as flower_strategies

    from experiments_manager.federated.federation_config import FederationConfig
    from experiments_manager.federated.federation_server import supervised_strategy

    parameters = STRATEGIES[name]
    hparams = {"federated": name, "minCl": 4, "minFit": 3, "minEval": 2, **parameters}
    path = settings_variant(workdir, f"strategy_{name}.py", [f"hparams.update({hparams!r})"], base=FEDERATED_SETTINGS)
    settings = load(path)
    config = FederationConfig.from_settings(settings)
    strategy = supervised_strategy(config, types.SimpleNamespace(settings=settings))
    flower_class = getattr(flower_strategies, name)
    assert isinstance(strategy, flower_class) and type(strategy).__mro__[1] is flower_class, type(strategy).__mro__
    assert type(strategy).__name__ == name
    for key, value in parameters.items():
        assert getattr(strategy, key) == value, (key, getattr(strategy, key))
    assert (strategy.min_available_nodes, strategy.min_train_nodes, strategy.min_evaluate_nodes) == (4, 3, 2)
    assert config.strategy_parameters == parameters  # what run.json records; other hparams (learningRate...) left out


def _exported_dense_weights(export_dir):
    """The weights of the curve-fitting model's three Dense layers in an exported version, in get_weights() order."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(Path(export_dir) / "variables" / "variables"))
    found = {}
    for key in reader.get_variable_to_shape_map():
        match = re.fullmatch(r"model/_operations/(\d+)/(_kernel|bias)/\.ATTRIBUTES/VARIABLE_VALUE", key)
        if match:
            found[(int(match[1]), match[2] != "_kernel")] = reader.get_tensor(key)
    assert len(found) == 6, sorted(reader.get_variable_to_shape_map())
    return [found[key] for key in sorted(found)]


@pytest.mark.federation  # starts a federation: one at a time (tests/conftest.py)
@pytest.mark.claim('FedAdam, FedYogi, FedAvgM, FedMedian, Krum with their parameters (`eta`, ...)')
def test_a_simulation_with_fedadam_aggregates_with_fedadam_on_the_server(run_cli, workdir):
    """2 clients, 1 round of FedAdam with tau ~ 0: in round 1 FedAdam moves every weight that changed by exactly
    eta * sqrt(1 - beta_2**2) / (1 - beta_1**2) (its bias-corrected step size; m / sqrt(v) = sign of the update),
    whatever the clients did, and none by more. FedAvg would move each weight by its own averaged update."""
    import keras

    from experiments_manager.training.model import compile_for_evaluation

    eta, beta_1, beta_2 = 0.05, 0.5, 0.75
    hparams = {"federated": "FedAdam", "eta": eta, "beta_1": beta_1, "beta_2": beta_2, "tau": 1e-15,
               "fraction_evaluate": 0.0}
    path = settings_variant(workdir, "fedadam.py", ["nb_train_samples = 400", "nb_val_samples = 200",
                                                    f"hparams.update({hparams!r})"], base=FEDERATED_SETTINGS)
    result = run_cli("federated", "simulate", "-u", str(path), "--num-clients", "2", "--rounds", "1",
                     "--hparam", "nbEpoch=1", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    server = single_experiment(workdir / WORKING_FOLDER)
    run = read_run(server)
    assert run["status"] == "finished" and run["rounds_completed"] == 1, run
    assert run["federated"]["strategy"] == "FedAdam"
    assert run["federated"]["parameters"] == {key: value for key, value in hparams.items() if key != "federated"}
    assert run["exported_versions"] == [1], run["exported_versions"]  # round 1 always improves on nothing

    # the global model before round 1: the server builds it after seeding with the settings' random_seed
    settings = load(path, {"nbEpoch": 1})
    seed = settings.runtime.random_seed
    print(f"server seed: {seed}")
    keras.utils.set_random_seed(seed)
    before = compile_for_evaluation(settings).get_weights()
    after = _exported_dense_weights(server / "exported_models" / "1")
    assert [array.shape for array in after] == [array.shape for array in before]
    moves = np.concatenate([np.abs(new - old).ravel() for old, new in zip(before, after)])
    step = eta * np.sqrt(1 - beta_2 ** 2) / (1 - beta_1 ** 2)
    moved = moves[moves > 1e-7]  # weights of dead ReLU units get no update at all
    exact = np.isclose(moved, step, rtol=1e-4, atol=0)
    print(f"FedAdam step {step:.6f}; {moved.size} of {moves.size} weights moved, {exact.sum()} by the step; "
          f"others by {np.unique(moved[~exact].round(6))}")
    assert moved.size > moves.size // 2, f"only {moved.size} of {moves.size} weights moved"
    assert moved.max() <= step * (1 + 1e-4), moved.max()
    assert exact.mean() > 0.9, np.unique(moved.round(6))  # a weight whose update is ~1e-15 may move less


# --- nonIID=True partitions -------------------------------------------------------------------------------------

def _clients_data(non_iid, num_clients=2):
    """Per client, the training and validation x a real FederatedClient of the example gets (its settings with
    procID, its partition through get_client_partition, the input object its Trainer trains on)."""
    from experiments_manager.federated.federated_client import FederatedClient
    from experiments_manager.federated.job import start_federation
    from experiments_manager.settings.pipeline import DataPartition

    _, _, _, job = start_federation(FEDERATED_SETTINGS, {"nonIID": non_iid, "nbEpoch": 1}, rounds=1,
                                    num_clients=num_clients)
    data = []
    for client_id in range(num_clients):
        client = FederatedClient(job, DataPartition(client_id, num_clients))
        try:
            assert client.settings.experiment.hparams["procID"] == client_id
            inputs = client.session.inputs
            data.append(tuple(np.concatenate([x for x, _ in dataset.as_numpy_iterator()]).ravel()
                              for dataset in (inputs.train, inputs.val)))
        finally:
            client.close()
    return data


@pytest.mark.claim('`nonIID=True` partitions')
def test_non_iid_clients_each_train_on_their_own_slice_of_x_while_iid_clients_share_it(workdir):
    """examples/federated: IID, each of 2 clients keeps one batch in two (1000 of the 2000 samples) drawn over all
    of [-2, 2]; with nonIID=True, client i trains on all its 2000 samples, all in the i-th half of [-2, 2].
    Validation is never split: 500 samples over [-2, 2] in both settings."""
    slices = {0: (-2.0, 0.0), 1: (0.0, 2.0)}
    iid, non_iid = _clients_data(non_iid=False), _clients_data(non_iid=True)
    for client_id, ((iid_train, iid_val), (train, val)) in enumerate(zip(iid, non_iid)):
        low, high = slices[client_id]
        print(f"client {client_id}: IID x in [{iid_train.min():.3f}, {iid_train.max():.3f}] ({iid_train.size}), "
              f"non-IID x in [{train.min():.3f}, {train.max():.3f}] ({train.size})")
        assert iid_train.size == 1000 and train.size == 2000
        assert iid_train.min() < -1.9 and iid_train.max() > 1.9
        assert 0.4 < np.mean(iid_train < 0) < 0.6  # both halves of the range
        assert low <= train.min() < low + 0.05 and high - 0.05 < train.max() <= high  # all of its slice, only it
        for validation in (iid_val, val):
            assert validation.size == 500 and validation.min() < -1.9 and validation.max() > 1.9


# --- which weights a client sends back ---------------------------------------------------------------------------

KEEP_RAW_WEIGHTS = """
RAW_STEPS = []  # the raw (trained) weights after every training step of this process
def addon_callbacks(model, train_samples, val_samples):
    class KeepRaw(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            RAW_STEPS.append([variable.numpy().copy() for variable in model.trainable_variables])
    return [KeepRaw()]
"""


def _client_round(job, global_weights, server_round):
    """One training round of client 0, built from its checkpoint as a Flower message is; returns the weights it
    sends, and the raw weights after each of the round's steps."""
    from experiments_manager.federated.federated_client import FederatedClient
    from experiments_manager.settings.pipeline import DataPartition

    client = FederatedClient(job, DataPartition(0, 2))
    try:
        sent, _ = client.train_round(global_weights, server_round=server_round)
        steps = client.settings.training.addon_callbacks.__globals__["RAW_STEPS"]
        return sent, list(steps), client.settings.training.ema_momentum
    finally:
        client.close()


@pytest.mark.claim('clients send their EMA weights back')
def test_a_client_sends_back_its_ema_weights_not_its_raw_ones(workdir):
    """The weights a client returns are the moving averages of the weights its steps produced in this round,
    restarted from the global weights (decay min(ema_momentum, (1 + n) / (40 + n)), 0 at the round's first step),
    not the weights its last step produced. Round 2 runs in a new client restored from its checkpoint."""
    import keras

    from experiments_manager.federated.job import start_federation
    from experiments_manager.training.model import compile_for_evaluation

    path = settings_variant(workdir, "keep_raw.py", ["nb_train_samples = 400", KEEP_RAW_WEIGHTS],
                            base=FEDERATED_SETTINGS)
    settings, _, _, job = start_federation(str(path), {"nbEpoch": 2}, rounds=2, num_clients=2)
    keras.utils.set_random_seed(settings.runtime.random_seed)
    first_global = compile_for_evaluation(settings).get_weights()
    sent_1, _, _ = _client_round(job, first_global, 1)
    second_global = [array * 0.5 for array in sent_1]  # as if another client had sent zeros
    sent, steps, ceiling = _client_round(job, second_global, 2)
    assert len(steps) == 2 * 4  # 2 local epochs of its 4 batches of 50
    expected = None
    for n, raw in enumerate(steps):
        decay = 0.0 if n == 0 else min(ceiling, (1 + n) / (40 + n))
        expected = raw if expected is None else [decay * mean + (1 - decay) * w for mean, w in zip(expected, raw)]
    assert len(sent) == len(expected) == len(steps[-1])
    for returned, average, last in zip(sent, expected, steps[-1]):
        np.testing.assert_allclose(returned, average, rtol=1e-5, atol=1e-6)
    differences = [float(np.max(np.abs(returned - last))) for returned, last in zip(sent, steps[-1])]
    print(f"largest |sent - last raw| per array: {differences}")
    assert max(differences) > 1e-4  # the raw weights are not what was sent


COUNT_VALIDATIONS = """
VALIDATIONS = []  # one entry per validation run of this process
def addon_callbacks(model, train_samples, val_samples):
    class CountValidations(tf.keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            VALIDATIONS.append(1)
    return [CountValidations()]
"""


@pytest.mark.parametrize("validates", [True, False])
@pytest.mark.claim("`federated_client_validation = False`: clients only train (no validation after their local "
                   "epochs, as a bare Flower ClientApp); the server evaluates the global model either way")
def test_clients_validate_after_each_local_epoch_unless_the_settings_say_not(workdir, validates):
    """2 local epochs of client 0: validated twice (its history.csv's `val_` columns) by default, never with
    `federated_client_validation = False`, when its own records follow its training loss."""
    import csv

    from experiments_manager.federated.federated_client import FederatedClient, client_folder
    from experiments_manager.federated.job import start_federation
    from experiments_manager.settings.pipeline import DataPartition
    from experiments_manager.training.model import compile_for_evaluation

    lines = ["nb_train_samples = 200", COUNT_VALIDATIONS] + ([] if validates else ["federated_client_validation = False"])
    path = settings_variant(workdir, "count_validations.py", lines, base=FEDERATED_SETTINGS)
    settings, _, _, job = start_federation(str(path), {"nbEpoch": 2}, rounds=1, num_clients=2)
    client = FederatedClient(job, DataPartition(0, 2))
    try:
        _, metrics = client.train_round(compile_for_evaluation(settings).get_weights(), server_round=1)
        validations = len(client.settings.training.addon_callbacks.__globals__["VALIDATIONS"])
    finally:
        client.close()
    with open(client_folder(job.experiment_dir, 0) / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    print(f"validates={validates}: {validations} validations, history columns {sorted(rows[-1])}")
    assert len(rows) == 2 and "loss" in rows[-1] and metrics["num-examples"] > 0
    assert validations == (2 if validates else 0)
    assert ("val_loss" in rows[-1]) == validates


# --- Kafka input in federated mode -------------------------------------------------------------------------------

@pytest.mark.claim('Kafka input is not supported in federated mode')
def test_a_federated_settings_file_with_kafka_input_is_refused_and_creates_nothing(run_cli, workdir):
    path = settings_variant(workdir, "kafka_federated.py", [
        "consume_data_from_kafka = True", "kafka_bootstrap_servers = '127.0.0.1:9'", "kafka_connect_timeout_secs = 2",
    ], base=FEDERATED_SETTINGS)
    result = run_cli("federated", "simulate", "-u", str(path), "--rounds", "1", timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: kafka_federated.py: consume_data_from_kafka: not supported in federated training yet "
                      "(expected False with enable_federated_learning)"], result.stderr
    assert "Traceback" not in result.stderr
    assert not (workdir / "experiments").exists()


# --- deployment: the superlink / supernode wrappers, and the wait for minCl timing out ----------------------------


def test_non_iid_slices_follow_the_number_of_clients_not_mincl(workdir):
    """`--num-clients 3` with the example's minCl=2: client i of 3 trains in the i-th third of [-2, 2] (the slice
    once came from minCl, and client 2 trained on [2, 4], outside every validation x)."""
    thirds = [(-2 + 4 * index / 3, -2 + 4 * (index + 1) / 3) for index in range(3)]
    for client_id, (train, _) in enumerate(_clients_data(non_iid=True, num_clients=3)):
        low, high = thirds[client_id]
        assert low - 1e-5 <= train.min() < low + 0.05 and high - 0.05 < train.max() <= high + 1e-5, (client_id, low, high)
