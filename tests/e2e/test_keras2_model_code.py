"""Keras 2-era model code runs unchanged (`tests/data/keras2_models/`, written fresh in the style of the original
framework's examples, seeded synthetic data): TensorFlow ops applied to the model's symbolic tensors become layers
(a TCN's residual sums and activations, an autoencoder's normalised embedding, a classifier's softmax) that train,
export, serve and reload; Keras 2's metric conventions (a bare string, one metric object, a custom `Metric` with
Keras 2's signature); data named relative to the run's folder, as the original ran there; the settings' imports of
the `[research]` extra (pandas).

The three files train one epoch each with `em.train`, once for the module; each version is compared with the Keras
model `em.load` rebuilds and with a server's answer.
"""

import logging
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import REPO, settings_variant

pytestmark = pytest.mark.slow  # its module fixtures train several runs (make test-fast leaves it out)

CORPUS = REPO / "tests" / "data" / "keras2_models"
NAMES = ("tcn", "autoencoder", "classifier")
DATA_SEED = 5
# what each model file applies to the model's tensors: the layers they must have become
TF_OP_LAYERS = {"tcn": {"tf.nn.relu", "tf.math.add", "tf.concat", "tf.math.reduce_mean"},
                "autoencoder": {"tf.expand_dims", "tf.math.l2_normalize", "tf.reshape"},
                "classifier": {"tf.nn.softmax"}}
METRIC_COLUMNS = {"tcn": "val_mae", "autoencoder": "val_close_fraction",
                  "classifier": "val_sparse_categorical_accuracy"}


class Lines(logging.Handler):
    """Keeps the messages of one logger while the module's runs train."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def write_timeseries(folder: Path) -> None:
    """The TCN's data, where its settings name it from the run's folder: a noisy sine in train.csv and val.csv."""
    import pandas as pd

    print(f"timeseries seed {DATA_SEED}")
    rng = np.random.default_rng(DATA_SEED)
    folder.mkdir(parents=True)
    for name, length in (("train", 600), ("val", 200)):
        t = np.arange(length, dtype=np.float32)
        values = np.sin(t / 7.0) + rng.normal(scale=0.05, size=length)
        pd.DataFrame({"value": values}).to_csv(folder / f"{name}.csv", index=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> types.SimpleNamespace:
    import experiments_manager as em

    root = tmp_path_factory.mktemp("keras2_models")
    shutil.copytree(CORPUS, root, dirs_exist_ok=True)
    write_timeseries(root / "datasamples" / "timeseries")
    lines = Lines()
    logger = logging.getLogger("experiments_manager.settings.data_folders")
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.INFO)
    runs = {}
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(root)
            for name in NAMES:
                outcome = em.train(f"settings_{name}.py")
                assert outcome.status == "finished", outcome.reason
                runs[name] = root / outcome.experiment.root
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    return types.SimpleNamespace(root=root, runs=runs, data_lines=lines.messages)


def probe(name: str) -> np.ndarray:
    rng = np.random.default_rng(11)
    shapes = {"tcn": (8, 24, 1), "autoencoder": (8, 32), "classifier": (8, 2)}
    return rng.normal(size=shapes[name]).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.claim("TensorFlow ops applied to a model's symbolic tensors (`tf.concat`, `tf.nn.relu`, "
                   "`tf.reduce_mean`...) become layers, as Keras 2 made them: trained, exported, served, reloaded",
                   note="(a TCN, a 1D autoencoder and a classifier in the Keras 2 style: the layers are there, "
                        "`em.load` and an in-process server answer as the version's SavedModel, 1e-5)")
@pytest.mark.claim("`get_metrics` may return a bare string or one metric object; a custom `Metric` written with "
                   "Keras 2's signature (name first, weights added by name) trains",
                   note="(their `val_` columns in history.csv)")
def test_keras2_model_code_trains_exports_serves_and_reloads(corpus: types.SimpleNamespace, name: str,
                                                            model_server: object) -> None:
    import tensorflow as tf

    import experiments_manager as em
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.serving.config import source_from_experiment
    from experiments_manager.run.version_records import chosen_version

    run = corpus.runs[name]
    model = em.load(run)
    assert TF_OP_LAYERS[name] <= {layer.name.rstrip("_0123456789") for layer in model.layers}, \
        [layer.name for layer in model.layers]
    assert {type(layer).__name__ for layer in model.layers if layer.name.startswith("tf.")} == {"TFOpLayer"}
    experiment = Experiment.open(run)
    version = experiment.export_dir / str(chosen_version(experiment)[0])
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    (input_name,) = signature.structured_input_signature[1]
    x = probe(name)
    expected = signature(**{input_name: tf.constant(x)})["output_0"].numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    server = model_server([source_from_experiment(run)])
    answer = requests.post(f"{server.rest_url}/v1/models/model_{name}:predict", json={"instances": x.tolist()},
                           timeout=30)
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["predictions"], expected, rtol=1e-5, atol=1e-5)
    header = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert METRIC_COLUMNS[name] in header, header


@pytest.mark.claim("a custom `Metric` written for Keras 2 computes what it says",
                   note="(the autoencoder's share of values within 0.5, recomputed from the version's answers on "
                        "the validation data)")
def test_a_keras2_custom_metric_computes_what_it_says(corpus: types.SimpleNamespace) -> None:
    import importlib.util

    import experiments_manager as em

    spec = importlib.util.spec_from_file_location("autoencoder_settings", CORPUS / "settings_autoencoder.py")
    settings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(settings)
    x = settings.signals(64, 1).astype(np.float32)
    reconstruction = em.load(corpus.runs["autoencoder"]).predict(x, verbose=0)
    expected = float(np.mean(np.abs(x - reconstruction) < 0.5))
    rows = (corpus.runs["autoencoder"] / "history.csv").read_text().splitlines()
    logged = float(dict(zip(rows[0].split(","), rows[-1].split(",")))["val_close_fraction"])
    assert abs(logged - expected) < 1e-6, (logged, expected)


@pytest.mark.claim("a relative `raw_data_dir_*` found only from the run's folder, as the original framework ran, is "
                   "used with one info line; found nowhere, the pipeline's failure is one line naming both places",
                   note="(the TCN's `../../../../datasamples/timeseries/`, read with pandas)")
def test_data_named_from_the_run_folder_is_found_and_a_missing_one_is_one_line(corpus: types.SimpleNamespace) -> None:
    import experiments_manager as em
    from experiments_manager.utils.errors import UserInputError

    found = [line for line in corpus.data_lines if "raw_data_dir_train" in line]
    data = corpus.root / "datasamples" / "timeseries"
    assert found and found[0] == (f"settings_tcn.py: raw_data_dir_train = '../../../../datasamples/timeseries/' is "
                                  "not found from the current folder; using it from the run's folder, as the original "
                                  f"framework ran: {data}/"), corpus.data_lines
    nowhere = settings_variant(corpus.root, "nowhere_tcn.py", ["raw_data_dir_train = '../../../../nowhere/'"],
                               base="settings_tcn.py")
    folders_before = sorted((corpus.root / "experiments" / "keras2_models" / "tcn").iterdir())
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(corpus.root)
        with pytest.raises(UserInputError) as refused:
            em.train(str(nowhere))
    (line,) = refused.value.problems
    assert line.startswith("nowhere_tcn.py: get_input_pipeline: raw_data_dir_train = '../../../../nowhere/': "
                           "expected a folder, found neither from the current folder ("), line
    assert "nor from the run's folder (" in line and "FileNotFoundError" in line, line
    assert sorted((corpus.root / "experiments" / "keras2_models" / "tcn").iterdir()) == folders_before


@pytest.mark.claim("a TensorFlow function that cannot take a model's tensor keeps Keras's whole advice in its one "
                   "line, naming the model file's line")
def test_an_op_tensorflow_cannot_dispatch_is_one_line_with_kerass_advice(corpus: types.SimpleNamespace) -> None:
    import experiments_manager as em
    from experiments_manager.utils.errors import UserInputError

    model_file = corpus.root / "model_rfft.py"
    model_file.write_text((CORPUS / "model_classifier.py").read_text().replace(
        "    return tf.keras.Model(inputs, tf.nn.softmax(logits, axis=-1), name='classifier')",
        "    spectrum = tf.signal.rfft(logits)\n"
        "    return tf.keras.Model(inputs, spectrum, name='classifier')"))
    settings = settings_variant(corpus.root, "rfft.py", ["model_file = 'model_rfft.py'"],
                                base="settings_classifier.py")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(corpus.root)
        with pytest.raises(UserInputError) as refused:
            em.train(str(settings))
    (line,) = refused.value.problems
    assert line.startswith("model_rfft.py: model (line 9): raised ValueError: A KerasTensor cannot be used as input "
                           "to a TensorFlow function."), line
    assert "What you should do instead is wrap `tf_fn` in a layer: `class MyLayer(Layer):; " in line, line


def test_the_research_extra_is_installed():
    """`make install` installs the `[research]` extra: what the original framework's settings files import."""
    import cv2  # noqa: F401
    import pandas  # noqa: F401
    import scipy  # noqa: F401
    import sklearn  # noqa: F401
    import tqdm  # noqa: F401


@pytest.mark.claim("a settings file importing a module that is not installed is one line naming it, and the "
                   "`[research]` extra for the scientific stack")
def test_a_missing_module_is_one_line_naming_what_provides_it(tmp_path: Path) -> None:
    from experiments_manager.settings import load_settings
    from experiments_manager.settings.extras import missing_module_line
    from experiments_manager.utils.errors import UserInputError

    settings = tmp_path / "needs.py"
    settings.write_text("import numpy as np\nimport no_such_module_for_the_test\n")
    with pytest.raises(UserInputError) as refused:
        load_settings(settings)
    assert refused.value.problems == [f"needs.py: line 2: imports no_such_module_for_the_test, which is not installed "
                                      f"in this environment ({__import__('sys').executable}): pip install it"]
    line = missing_module_line(ModuleNotFoundError("No module named 'cv2'", name="cv2"))
    assert line.startswith("imports cv2, which is not installed: pip install 'experiments_manager[research]' ("), line
