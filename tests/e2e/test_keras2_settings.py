"""Settings written for Keras 2 (TF 2.14) keep Keras 2's behaviour under Keras 3.

The baseline is Keras 2 itself: `tf_keras` (Keras 2's last release, whose data
adapters, metrics and optimizers are those of TF 2.14's Keras) computes the same
things side by side. The corpus in tests/data/keras2/ (one Keras 2 habit per
file, generated data) then runs unchanged through train, resume, sweep and
federated simulate.
"""

import concurrent.futures
import json
import logging
import shutil
import types

import numpy as np
import pytest

from conftest import REPO, cli_env, run_command
from experiments_manager.run import endings

pytestmark = pytest.mark.slow  # its module fixtures train several runs (make test-fast leaves it out)

CORPUS = REPO / "tests/data/keras2"
# file -> (working folder under experiments/keras2, columns history.csv must hold, monitor mode)
CORPUS_FILES = {
    "keras2_bare_metrics.py": ("bare_metrics", {"val_auc", "val_acc", "val_hinge", "val_binary_crossentropy",
                                                "val_auc_raw"}, "max"),
    "keras2_image_generator.py": ("image_generator", {"val_accuracy", "val_loss_raw"}, "min"),
    "keras2_sequence.py": ("sequence", {"val_mae", "val_loss_raw"}, "min"),
    "keras2_legacy_optimizer.py": ("legacy_optimizer", {"val_logcosh", "val_mean_squared_error"}, "min"),
    "keras2_generator.py": ("generator", {"val_mae"}, "min"),
}


def _tf_keras():
    return pytest.importorskip("tf_keras", reason="tf_keras (Keras 2) is the baseline; pip install tf_keras")


def _keras3():
    import tensorflow as tf

    from experiments_manager.keras2.namespaces import install_keras2_compatibility

    install_keras2_compatibility()
    return tf.keras


def _binary_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    return x, (x[:, 0] > 0).astype("float32"), [rng.normal(size=(3, 1)).astype("float32"), np.zeros(1, "float32")]


def _evaluate(K, metrics, weights, x, y):
    model = K.Sequential([K.Input((3,)), K.layers.Dense(1, activation="sigmoid")])
    model.set_weights(weights)
    model.compile(optimizer="sgd", loss="mse", metrics=metrics)
    return {name: float(value) for name, value in model.evaluate(x, y, batch_size=16, verbose=0,
                                                                  return_dict=True).items()}


METRIC_GROUPS = {  # metric lists (names unique within each), built for one Keras module K
    "functions": lambda K: [K.metrics.binary_crossentropy, K.metrics.hinge, K.metrics.poisson,
                            K.metrics.squared_hinge, K.metrics.mean_squared_error],
    "objects": lambda K: [K.metrics.BinaryCrossentropy(), K.metrics.Hinge(), K.metrics.Poisson()],
    "names": lambda K: ["hinge", "squared_hinge", "AUC", "acc", "mae", "logcosh"],
}


@pytest.mark.parametrize("group", sorted(METRIC_GROUPS))
@pytest.mark.claim(
    "bare metric functions / objects with labels (batch,) give Keras 2's values (Keras 3 alone does not)")
@pytest.mark.claim(
    "`'AUC'`, `'mae'`, `'logcosh'`, `tf.keras.metrics.mean_squared_error` logged under Keras 2's names",
    note='(names group)')
def test_metrics_give_keras2s_values_and_names_for_labels_of_rank_1(group):
    """Labels (batch,) against outputs (batch, 1): bare functions, metric objects and Keras 2 names."""
    from experiments_manager.keras2.metrics import keras2_metrics

    K2, K3 = _tf_keras(), _keras3()
    x, y, weights = _binary_data()
    keras2 = _evaluate(K2, METRIC_GROUPS[group](K2), weights, x, y)
    model = K3.Sequential([K3.Input((3,)), K3.layers.Dense(1)])
    ours = _evaluate(K3, keras2_metrics(METRIC_GROUPS[group](K3), model, "s.py"), weights, x, y)
    print("Keras 2:", keras2, "\nengine: ", ours)
    assert set(ours) == set(keras2)
    for name, value in keras2.items():
        assert ours[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


@pytest.mark.claim(
    "bare metric functions / objects with labels (batch,) give Keras 2's values (Keras 3 alone does not)")
def test_keras3_alone_gives_other_values_and_names():
    """What the engine's metric handling changes: without it, the same settings log other numbers and names."""
    K2, K3 = _tf_keras(), _keras3()
    x, y, weights = _binary_data()
    keras2 = _evaluate(K2, [K2.metrics.hinge, "AUC"], weights, x, y)
    plain = _evaluate(K3, [K3.metrics.hinge, "AUC"], weights, x, y)  # broadcast to (batch, batch); 'AUC'
    assert abs(plain["hinge"] - keras2["hinge"]) > 0.05 and "auc" in keras2 and "auc" not in plain


@pytest.mark.claim("what cannot be kept is one line naming file and field (`'ce'`)")
def test_a_metric_name_no_keras_keeps_is_one_clear_line():
    from experiments_manager.utils.errors import UserInputError
    from experiments_manager.keras2.metrics import keras2_metrics

    K3 = _keras3()
    model = K3.Sequential([K3.Input((3,)), K3.layers.Dense(1)])
    with pytest.raises(UserInputError) as raised:
        keras2_metrics(["mae", "ce"], model, "s.py")
    (line,) = raised.value.problems
    assert line.startswith("s.py: get_metrics: 'ce': ") and "binary_crossentropy" in line


class _RecordingSequence:
    """A Keras 2 Sequence of `length` batches whose values are their index; records what is read."""

    def __init__(self, K, length, log):
        class Sequence(K.utils.Sequence):
            def __len__(self):
                return length

            def __getitem__(self, index):
                log.append(index)
                x = np.full((4, 3), index, "float32")
                return x, x[:, :1]

            def on_epoch_end(self):
                log.append("end")

        self.sequence = Sequence()


def _pipeline_settings(nb_train_samples, nb_val_samples, batch_size):
    """What `as_pipeline` reads of the settings: the data and training sections and the file name."""
    return types.SimpleNamespace(
        data=types.SimpleNamespace(train_samples=nb_train_samples, val_samples=nb_val_samples),
        training=types.SimpleNamespace(batch_size=batch_size), path=types.SimpleNamespace(name="s.py"))


def _passes(log):
    """The recorded reads split at each on_epoch_end (the last pass may not have ended yet)."""
    passes, current = [], []
    for entry in log:
        if entry == "end":
            passes.append(current)
            current = []
        else:
            current.append(entry)
    return passes + ([current] if current else [])


def _fit_history(K, train, val, steps, val_steps):
    """Fits a frozen model (learning rate 0): the losses tell which batches each epoch saw."""
    model = K.Sequential([K.Input((3,)), K.layers.Dense(1)])
    model.set_weights([np.full((3, 1), 0.1, "float32"), np.zeros(1, "float32")])
    model.compile(optimizer=K.optimizers.SGD(0.0), loss="mse")
    history = model.fit(train, validation_data=val, epochs=3, steps_per_epoch=steps, validation_steps=val_steps,
                        shuffle=False, verbose=0)
    return history.history


@pytest.mark.claim(
    'a `keras.utils.Sequence`: each epoch a fresh (shuffled) pass cut at the epoch length, `on_epoch_end()` after '
    'each')
def test_sequences_give_keras2s_epochs_fresh_passes_cut_at_the_epoch_length():
    from experiments_manager.keras2.pipelines import as_pipeline

    K2, K3 = _tf_keras(), _keras3()
    settings = _pipeline_settings(12, 12, batch_size=4)  # 3 of the 5 batches per epoch
    keras2 = _fit_history(K2, _RecordingSequence(K2, 5, []).sequence, _RecordingSequence(K2, 5, []).sequence, 3, 3)
    val = as_pipeline(_RecordingSequence(K3, 5, []).sequence, settings, training=False)
    ours = _fit_history(K3, val.dataset, as_pipeline(_RecordingSequence(K3, 5, []).sequence, settings,
                                                     training=False).dataset, val.steps, val.steps)
    plain = _fit_history(K3, _RecordingSequence(K3, 5, []).sequence, _RecordingSequence(K3, 5, []).sequence, 3, 3)
    print("Keras 2:", keras2, "\nengine: ", ours, "\nKeras 3:", plain)
    for name in ("loss", "val_loss"):
        np.testing.assert_allclose(ours[name], keras2[name], rtol=1e-6)
    assert plain["loss"] != pytest.approx(keras2["loss"], rel=1e-3)  # Keras 3 alone reads on across epochs

    # training: each epoch is a fresh, shuffled pass cut at 3 batches; 7 steps on 5 batches go on to a new pass
    log = []
    train = as_pipeline(_RecordingSequence(K3, 5, log).sequence, settings, training=True, seed=1)
    log.clear()  # the read of batch 0 that gave the dataset its signature
    for batch in train.dataset.take(3 * train.steps):
        pass
    passes = _passes(log)
    assert [len(one) for one in passes] == [3, 3, 3] and all(len(set(one)) == 3 for one in passes)
    assert len({tuple(one) for one in passes}) > 1  # the order changes from epoch to epoch
    log.clear()
    long_settings = _pipeline_settings(28, 12, batch_size=4)
    long = as_pipeline(_RecordingSequence(K3, 5, log).sequence, long_settings, training=True, seed=1)
    log.clear()
    assert long.steps == 7
    assert len(list(long.dataset.take(7))) == 7 and [len(one) for one in _passes(log)] == [5, 2]


@pytest.mark.claim('`ImageDataGenerator().flow(...)`: `n // batch_size` batches')
def test_image_data_generator_epochs_are_n_over_batch_size():
    """The original framework's rule for iterators that know their sample count: `n // batch_size` batches."""
    from experiments_manager.keras2.pipelines import as_pipeline

    K3 = _keras3()
    x = np.random.default_rng(0).normal(size=(100, 4, 4, 1)).astype("float32")
    flow = K3.preprocessing.image.ImageDataGenerator().flow(x, np.arange(100, dtype="float32"), batch_size=32,
                                                            shuffle=False)
    settings = _pipeline_settings(None, None, batch_size=32)
    pipeline = as_pipeline(flow, settings, training=False)
    assert pipeline.steps == 3  # 100 // 32: the partial fourth batch is left out, as Keras 2 left it
    epoch = list(pipeline.dataset.take(pipeline.steps))
    assert [len(y) for _, y in epoch] == [32, 32, 32]
    np.testing.assert_array_equal(np.concatenate([y for _, y in epoch]), np.arange(96))
    second = list(pipeline.dataset.take(2 * pipeline.steps))[pipeline.steps:]
    np.testing.assert_array_equal(np.concatenate([y for _, y in second]), np.arange(96))  # a fresh pass


def _train_sgd(K, optimizer, steps=20):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * 8, 2)).astype("float32")
    y = x @ np.array([[1.0], [-2.0]], "float32")
    model = K.Sequential([K.Input((2,)), K.layers.Dense(1)])
    model.set_weights([np.zeros((2, 1), "float32"), np.zeros(1, "float32")])
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return model.get_weights()


@pytest.mark.claim('`optimizers.legacy.SGD(lr=, decay=, momentum=)` as TF 2.14')
@pytest.mark.claim('`Adam(lr=0.01)`: `lr` ignored with a warning')
@pytest.mark.claim("`Reduction.AUTO` is `'sum_over_batch_size'`")
def test_optimizers_take_keras2_arguments_as_tf_2_14_did(caplog):
    K2, K3 = _tf_keras(), _keras3()
    keras2 = _train_sgd(K2, K2.optimizers.legacy.SGD(lr=0.05, decay=0.05, momentum=0.9))
    ours = _train_sgd(K3, K3.optimizers.legacy.SGD(lr=0.05, decay=0.05, momentum=0.9))
    undecayed = _train_sgd(K3, K3.optimizers.SGD(learning_rate=0.05, momentum=0.9))
    for got, want in zip(ours, keras2):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(undecayed[0] - keras2[0])) > 1e-3  # the decay matters here

    with caplog.at_level(logging.WARNING, logger="experiments_manager"):
        adam = K3.optimizers.Adam(lr=0.1)
    assert float(adam.learning_rate) == pytest.approx(float(K2.optimizers.Adam(lr=0.1).learning_rate))  # 0.001
    assert "`lr` is ignored" in caplog.text and "learning_rate=0.1" in caplog.text

    y_true, y_pred = np.ones((4, 1), "float32"), np.full((4, 1), 0.5, "float32")
    auto = K3.losses.MeanSquaredError(reduction=K3.losses.Reduction.AUTO)
    assert float(auto(y_true, y_pred)) == pytest.approx(
        float(K2.losses.MeanSquaredError(reduction=K2.losses.Reduction.AUTO)(y_true, y_pred)))


@pytest.fixture(scope="module")
def corpus_workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("keras2")
    shutil.copytree(CORPUS, workdir / "tests/data/keras2")
    return workdir


@pytest.mark.parametrize("name", sorted(CORPUS_FILES))
@pytest.mark.claim('`get_input_pipeline` may return a `tf.data.Dataset` or a Keras 2 iterator')
@pytest.mark.claim('the decision is recorded in run.json (`monitor_mode`)')
@pytest.mark.claim('the Keras 2 corpus trains, resumes, sweeps and federates unchanged')
@pytest.mark.claim('a generator is read on', note='(`keras2_generator.py`)')
@pytest.mark.claim(
    '`em.resume(folder)` continues an interrupted run',
    note='(weak: `training.resume` on a run marked interrupted by hand)')
def test_corpus_file_trains_and_resumes_unchanged(name, corpus_workdir, monkeypatch):
    """Two epochs, then a resume that continues the same experiment from its checkpoint to a third."""
    from experiments_manager import training
    from experiments_manager.run.experiment import Experiment

    monkeypatch.chdir(corpus_workdir)
    folder, columns, mode = CORPUS_FILES[name]
    outcome = training.train(f"tests/data/keras2/{name}", {"nbEpoch": 2}, command=["test"])
    assert outcome.status == "finished", outcome.reason
    root = corpus_workdir / outcome.experiment.root
    assert root.parent == corpus_workdir / "experiments/keras2" / folder
    header = (root / "history.csv").read_text().splitlines()[0].split(",")
    assert columns <= set(header), header
    info = json.loads((root / "run.json").read_text())
    assert info["monitor_mode"] == mode and info["epochs_completed"] == 2

    experiment = Experiment.open(root)  # as if stopped after epoch 2 of 3
    experiment.record.end(endings.signalled(15, "as if stopped by SIGTERM"))
    info = experiment.run_info()  # and as if started with --hparam nbEpoch=3
    experiment.write_run_info({**info, "hparam_overrides": {"nbEpoch": 3}})
    resumed = training.resume(root, command=["test", "--resume"])
    assert resumed.status == "finished", resumed.reason
    info = json.loads((root / "run.json").read_text())
    assert info["epochs_completed"] == 3 and info["resumed_by"] == ["test", "--resume"]
    assert len((root / "history.csv").read_text().splitlines()) == 4


def _run(workdir, *arguments):
    return run_command(arguments, cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=400)


SWEPT_BY_THE_CLI = "keras2_legacy_optimizer.py"  # the one corpus file a whole `sweep` command runs
# the corpus files a `federated simulate` runs (each one a Ray cluster: ~40 CPU-s): Keras 2 metric names through the
# federation's aggregation, and a Python generator read in a client; every file trains as a trial in-process
FEDERATED = ("keras2_bare_metrics.py", "keras2_generator.py")


@pytest.mark.claim(
    'the Keras 2 corpus trains, resumes, sweeps and federates unchanged',
    note='(every file: its sampled trial hparams training in-process; two files through the `federated simulate` '
         'CLI, one through the `sweep` CLI)')
def test_corpus_runs_unchanged_through_sweep_and_federated_simulate(corpus_workdir, monkeypatch):
    """Every corpus file: what a sweep's trial does with it, in this process: its `hyperopt_space` sampled into
    hparams (seeded) that train one epoch. Two files (Keras 2 metric names, a generator) also go through a one-round,
    one-client `federated simulate` (the CLI: the client's pipeline is that file's Keras 2 one), and one through a
    whole one-trial `sweep` command (a trial process, its run.json); the three commands run two at a time."""
    from experiments_manager import training
    from experiments_manager.settings import load_settings
    from experiments_manager.sweeps.space import SearchSpace
    from hyperopt.pyll import stochastic

    jobs = {(name, "federated"): ("federated", "simulate", "-u", f"tests/data/keras2/{name}", "--num-clients", "1",
                                  "--rounds", "1", "--hparam", "nbEpoch=1") for name in FEDERATED}
    jobs[(SWEPT_BY_THE_CLI, "sweep")] = ("sweep", "-u", f"tests/data/keras2/{SWEPT_BY_THE_CLI}", "--max-evals", "1",
                                         "--seed", "3", "--hparam", "nbEpoch=1")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(lambda arguments: _run(corpus_workdir, *arguments), jobs.values())))
    for (name, kind), result in results.items():
        assert result.returncode == 0, f"{kind} {name}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    monkeypatch.chdir(corpus_workdir)
    for name, (folder, columns, _) in CORPUS_FILES.items():
        working = corpus_workdir / "experiments/keras2" / folder
        runs = [json.loads(path.read_text()) for path in working.glob("*/run.json")]
        federations = [run for run in runs if run.get("rounds_completed") == 1]
        assert len(federations) == (name in FEDERATED) and all(run["status"] == "finished" for run in federations), \
            (name, federations)
        settings_path = f"tests/data/keras2/{name}"
        space = SearchSpace.from_settings(load_settings(settings_path))
        sampled = space.hparams_for(stochastic.sample(space.expressions, rng=np.random.default_rng(3)))
        print(f"{name}: trial hparams {sampled} (seed 3)")
        outcome = training.train(settings_path, {**sampled, "nbEpoch": 1}, command=["test", "trial"])
        assert outcome.status == "finished", f"{name}: {outcome.reason}"
        info = json.loads((outcome.experiment.root / "run.json").read_text())
        assert all(info["hparams"][key] == value for key, value in sampled.items()), (info["hparams"], sampled)
        assert columns <= set((outcome.experiment.root / "history.csv").read_text().splitlines()[0].split(","))
    (sweep,) = (corpus_workdir / "experiments/keras2" / CORPUS_FILES[SWEPT_BY_THE_CLI][0]).glob("*_sweep_*/sweep.json")
    assert json.loads(sweep.read_text())["status"] == "finished"


@pytest.mark.claim('LR-on-plateau is added only when the learning rate is a number, not a schedule')
def test_lr_on_plateau_is_added_only_where_the_learning_rate_can_be_set():
    """A Keras 2 legacy optimizer's `decay` is a schedule: Keras refuses to set its learning rate."""
    from experiments_manager.training.model import plateau_can_set

    K3 = _keras3()
    assert plateau_can_set(K3.optimizers.legacy.SGD(lr=0.05, momentum=0.9), 0.05)
    assert not plateau_can_set(K3.optimizers.legacy.SGD(lr=0.05, decay=1e-3), 0.05)
    assert not plateau_can_set(K3.optimizers.Adam(K3.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)), 0.1)
