"""Models users bring, through the whole research loop: the text example (raw sentences in, a TextVectorization
vocabulary: a lookup table), a tabular model with dict inputs and adapted lookup layers, and a model with custom
objects, two inputs and two outputs.

The text example goes through the command line as a user runs it (train, evaluate, `--init-from`, serve with strings
over REST and gRPC, `predict`, export); the two others through the Python API (`em.evaluate`, `em.load`, `init_from`).
Every reading back of a version is compared with the version's own SavedModel (`serving_default`, what a server
answers) on raw inputs, unseen words and values included, to 1e-5. Each model is trained once for the module.
"""

import importlib.util
import json
import re
import shutil
import signal
import subprocess
import types
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import REPO, cli_env, run_command, settings_variant, single_experiment
from serving_helpers import predict_request

pytestmark = pytest.mark.slow  # its module fixtures train several runs (make test-fast leaves it out)

TEXT = "examples/text/mysettings_sentence_classification.py"
TEXT_FOLDER = "experiments/examples/text"
MODELS = REPO / "tests" / "data" / "models"
TOLERANCE = 1e-5


def cli(root: Path, *arguments: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return run_command(arguments, cwd=root, env=cli_env(), capture_output=True, text=True, timeout=timeout)


def text_module(root: Path) -> types.ModuleType:
    """The text example's settings as a plain module: its seeded sentence generator."""
    spec = importlib.util.spec_from_file_location("text_settings", root / TEXT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def served(version_folder: Path):
    """The version's `serving_default`, as a server loads it."""
    import tensorflow as tf

    return tf.saved_model.load(str(version_folder)).signatures["serving_default"]


def best_version(run: Path) -> Path:
    """The folder of the version holding the run's best epoch (what `em.load` and `evaluate` read by default)."""
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.version_records import chosen_version

    experiment = Experiment.open(run)
    return experiment.export_dir / str(chosen_version(experiment)[0])


def assert_same(got, expected) -> None:
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=TOLERANCE, atol=TOLERANCE, equal_nan=True)


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> types.SimpleNamespace:
    """The text example trained 3 epochs by `train -u` in a copy of examples/; probe sentences it never saw (unseen
    words, shouting, an empty one)."""
    root = tmp_path_factory.mktemp("text")
    shutil.copytree(REPO / "examples", root / "examples")
    result = cli(root, "train", "-u", TEXT, "--hparam", "nbEpoch=3")
    assert result.returncode == 0, result.stderr
    settings = text_module(root)
    sentences, _ = settings.make_sentences(64, 77)
    probe = np.concatenate([sentences, np.array([b"a zebra reviewed this okapi", b"", b"THE PHONE IS GREAT!!"])])
    return types.SimpleNamespace(root=root, run=single_experiment(root / TEXT_FOLDER), settings=settings,
                                 probe=probe)


@pytest.mark.claim("the text example trains on raw sentences; `evaluate` and `em.load` give the model its best "
                   "version serves", note="(train, evaluate through the command line; em.load against the version's "
                                          "SavedModel on unseen sentences, 1e-5; evaluate's accuracy recomputed from "
                                          "the SavedModel's answers)")
@pytest.mark.claim("`em.load`, `evaluate` and `--init-from` read a version's whole state: its weights, the lookup "
                   "tables its checkpoint holds, and its lookup layers' vocabularies",
                   note="(the text example's TextVectorization)")
def test_the_text_example_evaluates_and_loads_as_its_best_version_serves(text: types.SimpleNamespace) -> None:
    import tensorflow as tf

    import experiments_manager as em

    result = cli(text.root, "evaluate", str(text.run))
    assert result.returncode == 0, result.stderr
    assert re.search(r"^accuracy\s+[0-9.]+$", result.stdout, re.M) and "negative" in result.stdout, result.stdout
    model = em.load(text.run)
    signature = served(best_version(text.run))
    assert_same(model.predict(tf.constant(text.probe), verbose=0), signature(text=tf.constant(text.probe))["output_0"])
    sentences, labels = text.settings.make_sentences(text.settings.nb_val_samples, 1)  # the test pipeline
    accuracy = float(np.mean(np.argmax(signature(text=tf.constant(sentences))["output_0"].numpy(), axis=1) == labels))
    reported = float(re.search(r"^accuracy\s+([0-9.]+)$", result.stdout, re.M)[1])
    assert abs(reported - accuracy) < 1e-6 and accuracy > 0.6, (reported, accuracy)


@pytest.mark.claim("`--init-from` of a text run keeps the source's vocabulary, also when the new run's data would "
                   "adapt another", note="(a learning rate of 0: the new run's version answers as the source's, 1e-5)")
@pytest.mark.claim("`--hparam +name=value` adds a new hparam, named in the run's folder")
def test_init_from_a_text_run_keeps_its_vocabulary(text: types.SimpleNamespace) -> None:
    import keras
    import tensorflow as tf

    lines = ["nb_train_samples = 300", "def get_learningRate():", "    return 0.0"]
    variant = settings_variant(text.root, "frozen_text.py", lines, base=TEXT)
    vocabularies = []
    for count in (text.settings.nb_train_samples, 300):  # what each run's model file adapts on
        layer = keras.layers.TextVectorization(max_tokens=text.settings.max_tokens)
        layer.adapt(text.settings.make_sentences(count, 0)[0])
        vocabularies.append(layer.get_vocabulary())
    assert vocabularies[0] != vocabularies[1]  # so the new model file alone would number the words otherwise
    result = cli(text.root, "train", "-u", str(variant), "--init-from", str(text.run), "--hparam", "nbEpoch=1",
                 "--hparam", "+trial=7")
    assert result.returncode == 0, result.stderr
    fine_tuned = next(path for path in (text.root / TEXT_FOLDER).iterdir() if path.name.endswith("nbEpoch=1_trial=7"))
    info = json.loads((fine_tuned / "run.json").read_text())
    assert info["fine_tuned_from"]["run"] == str(text.run.resolve()) and info["hparams"]["trial"] == 7
    source = served(best_version(text.run))(text=tf.constant(text.probe))["output_0"]
    assert_same(served(fine_tuned / "exported_models" / "1")(text=tf.constant(text.probe))["output_0"], source)


@pytest.mark.claim("a text model is served with strings over REST (`instances` and `inputs`) and gRPC (DT_STRING), "
                   "answering as `em.load`", note="(`serve --model_dir` and `predict` through the command line)")
def test_the_text_model_serves_strings_over_rest_and_grpc(text: types.SimpleNamespace, start_cli: object) -> None:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    import experiments_manager as em
    from test_serving_cli import OutputReader

    expected = em.load(text.run).predict(tf.constant(text.probe), verbose=0)
    process = start_cli("serve", "--model_dir", str(text.run), "--grpc-port", "0", "--rest-port", "0", warm=True)
    output = OutputReader(process)
    grpc_address = output.wait_for(r"gRPC: (127\.0\.0\.1:\d+)", 90)[1]
    rest = output.wait_for(r"REST: (http://127\.0\.0\.1:\d+)/v1/models/model_text_classifier", 10)[1]
    url = f"{rest}/v1/models/model_text_classifier:predict"
    strings = [sentence.decode() for sentence in text.probe]
    rows = requests.post(url, json={"instances": strings}, timeout=30)
    assert rows.status_code == 200, rows.text
    assert_same(rows.json()["predictions"], expected)
    columns = requests.post(url, json={"inputs": {"text": strings}}, timeout=30)
    assert columns.status_code == 200, columns.text
    assert_same(columns.json()["outputs"], expected)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(grpc_address))
    answer = stub.Predict(predict_request("model_text_classifier", {"text": text.probe.astype(object)}), timeout=30)
    assert_same(tf.make_ndarray(answer.outputs["output_0"]), expected)
    streamed = cli(text.root, "predict", "--model_dir", str(text.run), "--predict_stream", "2", "--server",
                   grpc_address)
    assert streamed.returncode == 0, streamed.stderr
    assert len(re.findall(r"^\d+/32 right; \"", streamed.stdout, re.M)) == 2, streamed.stdout
    assert re.search(r"^accuracy [0-9.]+% on 64 sentences$", streamed.stdout, re.M), streamed.stdout
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


@pytest.mark.claim("edge export of a text model: ONNX is refused before converting, in one line naming the layer "
                   "and the way that works; LiteRT converts it with `--allow-flex-ops`, said unmeasured; nothing "
                   "left behind", note="(the text example's TextVectorization; LiteRT without Flex refused naming "
                                       "the layer's ops)")
def test_edge_export_of_the_text_model_refuses_onnx_and_writes_litert_with_flex(text: types.SimpleNamespace) -> None:
    run = text.run
    onnx = cli(text.root, "export", str(run), "--format", "onnx")
    assert onnx.returncode == 2 and len(onnx.stderr.strip().splitlines()) == 1, onnx.stderr
    line = onnx.stderr.strip()
    assert "--format onnx: layer 'vectorize' (TextVectorization) takes strings (text)" in line, line
    assert "export --format litert --allow-flex-ops instead" in line and ".tmp" not in line, line
    assert not (run / "edge").exists()
    litert = cli(text.root, "export", str(run), "--format", "litert")
    assert litert.returncode == 2 and len(litert.stderr.strip().splitlines()) == 1, litert.stderr
    assert re.search(r"Flex ops [A-Za-z0-9, ]*StringLower[A-Za-z0-9, ]* of layer 'vectorize' \(TextVectorization\)",
                     litert.stderr), litert.stderr
    assert not (run / "edge").exists()
    flex = cli(text.root, "export", str(run), "--format", "litert", "--allow-flex-ops", "--timing-seconds", "0.05")
    assert flex.returncode == 0, flex.stderr
    report = json.loads((run / "edge" / "litert-none" / "parity.json").read_text())
    row = report["rows"][1] if isinstance(report, dict) else report[1]
    assert "StringLower" in row["flex_ops"] and "Flex delegate" in row["note"], row
    assert sorted(path.name for path in (run / "edge").iterdir()) == ["litert-none"]


@pytest.fixture(scope="module")
def api_runs(tmp_path_factory: pytest.TempPathFactory) -> types.SimpleNamespace:
    """The tabular (dict inputs, StringLookup, IntegerLookup, Normalization) and the custom-object (a custom layer
    with a state variable, a custom activation, two inputs, two outputs) models trained 2 epochs with `em.train`."""
    import experiments_manager as em

    root = tmp_path_factory.mktemp("kinds")
    shutil.copytree(MODELS, root, dirs_exist_ok=True)
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for name in ("tabular", "custom"):
            outcome = em.train(str(root / f"settings_{name}.py"))
            assert outcome.status == "finished"
            runs[name] = root / outcome.experiment.root
    return types.SimpleNamespace(root=root, runs=runs)


def probe_inputs(kind: str) -> dict:
    """Inputs the model never saw, named as its served signature names them (unseen towns and zones included)."""
    rng = np.random.default_rng(5)
    if kind == "tabular":
        return {"city": np.array([b"paris", b"unseen-town", b"brest", b""] * 4),
                "zone": np.array([10, 20, 70, 50] * 4, dtype=np.int64),
                "size": rng.normal(50.0, 20.0, size=16).astype(np.float32)}
    return {"a": rng.normal(size=(16, 3)).astype(np.float32), "b": rng.normal(size=(16, 2)).astype(np.float32)}


def model_inputs(kind: str, inputs: dict):
    """What the Keras model is called with: the dict (as tensors: Keras takes no numpy bytes arrays), or the list."""
    import tensorflow as tf

    return {key: tf.constant(value) for key, value in inputs.items()} if kind == "tabular" else [inputs["a"],
                                                                                                 inputs["b"]]


def served_outputs(version_folder: Path, inputs: dict) -> dict:
    import tensorflow as tf

    return {name: value.numpy() for name, value in
            served(version_folder)(**{key: tf.constant(value) for key, value in inputs.items()}).items()}


@pytest.mark.parametrize("kind", ["tabular", "custom"])
@pytest.mark.claim("`em.load`, `evaluate` and `--init-from` read a version's whole state: its weights, the lookup "
                   "tables its checkpoint holds, and its lookup layers' vocabularies",
                   note="(a dict-input model with adapted StringLookup, IntegerLookup and Normalization; a model "
                        "with a custom layer, a custom activation, two inputs and two outputs: em.load against the "
                        "SavedModel on unseen values, evaluate's loss recomputed from the SavedModel's answers, a "
                        "fine-tuned run at learning rate 0 answering as its source)")
def test_lookup_custom_and_multi_input_models_evaluate_load_and_init_from(api_runs: types.SimpleNamespace,
                                                                         kind: str) -> None:
    import keras

    import experiments_manager as em

    run = api_runs.runs[kind]
    version = best_version(run)
    inputs = probe_inputs(kind)
    answers = served_outputs(version, inputs)
    loaded = em.load(run).predict(model_inputs(kind, inputs), verbose=0)
    if kind == "tabular":
        assert_same(loaded, answers["output_0"])
    else:
        assert sorted(loaded) == sorted(answers) == ["positive", "value"]
        for name in answers:
            assert_same(loaded[name], answers[name])
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(api_runs.root)
        evaluation = em.evaluate(run)
    x, y = _test_set(api_runs.root, kind)
    test_answers = served_outputs(version, x)
    if kind == "tabular":
        expected = keras.losses.binary_crossentropy(y[:, None], test_answers["output_0"]).numpy().mean()
    else:
        expected = (keras.losses.mean_squared_error(y["value"], test_answers["value"]).numpy().mean()
                    + keras.losses.binary_crossentropy(y["positive"], test_answers["positive"]).numpy().mean())
    assert abs(evaluation.metrics["loss"] - expected) < 1e-4 * max(1.0, expected), (evaluation.metrics, expected)
    _fine_tuned_answers_as_its_source(api_runs.root, kind, run, inputs, answers)


def _test_set(root: Path, kind: str):
    """The settings' test pipeline, read whole as numpy."""
    spec = importlib.util.spec_from_file_location(f"kind_{kind}", root / f"settings_{kind}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if kind == "tabular":
        features, label = module.table(128, 2)
        return {name: np.asarray(value) for name, value in features.items()}, label
    (a, b), y = module.pairs(128, 1)
    return {"a": a, "b": b}, y


def _fine_tuned_answers_as_its_source(root: Path, kind: str, run: Path, inputs: dict, answers: dict) -> None:
    """A run started from `run`'s best version at a learning rate of 0 exports what the source's version answers;
    the tabular one's model file adapts its lookup layers on other draws of the data (another vocabulary order)."""
    import experiments_manager as em

    lines = ["def get_learningRate():", "    return 0.0"]
    if kind == "tabular":
        lines += ["_table = table", "def table(count, seed):", "    return _table(count, seed + 5)"]
    variant = settings_variant(root, f"frozen_{kind}.py", lines, base=f"settings_{kind}.py")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        outcome = em.train(str(variant), {"nbEpoch": 1}, init_from=str(run))
    assert outcome.status == "finished"
    again = served_outputs(root / outcome.experiment.root / "exported_models" / "1", inputs)
    for name in answers:
        assert_same(again[name], answers[name])


@pytest.mark.claim("a model built on a dict of inputs is served by the dict's keys: REST rows of objects, "
                   "`{\"b64\": ...}` strings, answering as `em.load`", note="(the tabular model, an in-process server)")
def test_named_inputs_are_served_by_their_keys(api_runs: types.SimpleNamespace, model_server: object) -> None:
    import experiments_manager as em
    from experiments_manager.serving.config import source_from_experiment

    run = api_runs.runs["tabular"]
    inputs = probe_inputs("tabular")
    expected = em.load(run).predict(model_inputs("tabular", inputs), verbose=0)
    server = model_server([source_from_experiment(run)])
    rows = [{"city": city.decode(), "zone": int(zone), "size": float(size)}
            for city, zone, size in zip(inputs["city"], inputs["zone"], inputs["size"])]
    rows[0]["city"] = {"b64": "cGFyaXM="}  # b"paris", as bytes
    answer = requests.post(f"{server.rest_url}/v1/models/model_tabular:predict", json={"instances": rows}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert_same(answer.json()["predictions"], expected)
    metadata = requests.get(f"{server.rest_url}/v1/models/model_tabular/metadata", timeout=30).json()
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sorted(signature["inputs"]) == ["city", "size", "zone"]


@pytest.mark.claim("a model file whose layers are sized by a vocabulary its data changed is refused by `--init-from` "
                   "in one line naming the weight and the lookup layer, exit 2, no folder")
def test_init_from_with_a_vocabulary_of_another_size_names_the_layer(api_runs: types.SimpleNamespace) -> None:
    lines = ["CITIES = CITIES + ['toulouse', 'rennes']"]
    variant = settings_variant(api_runs.root, "more_cities.py", lines, base="settings_tabular.py")
    before = sorted((api_runs.root / "experiments").iterdir())
    result = cli(api_runs.root, "train", "-u", str(variant), "--init-from", str(api_runs.runs["tabular"]))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--init-from" in errors[0], result.stderr
    assert re.search(r"embeddings: expected the new model's shape \(9, 3\), got \(7, 3\) \(the model file builds "
                     r"layer 'city_ids' with another vocabulary than the version's", errors[0]), errors[0]
    assert sorted((api_runs.root / "experiments").iterdir()) == before


@pytest.mark.claim("an `--hparam` name the settings do not know is one line before training, with the closest "
                   "key; `+name=value` adds a new hparam", note="(through the command line: exit 2, no folder)")
@pytest.mark.claim("metrics that cannot be right for the labels the first batch shows are one line each before "
                   "training: one-hot metrics on class ids and the reverse, a binary metric on N classes",
                   note="(through the command line: categorical_accuracy on the text example's class ids; exit 2, no "
                        "folder)")
def test_a_newcomers_mistakes_stop_before_training_in_one_line(text: types.SimpleNamespace) -> None:
    before = sorted((text.root / TEXT_FOLDER).iterdir())
    typo = cli(text.root, "train", "-u", TEXT, "--hparam", "embed_dimm=4")
    assert typo.returncode == 2 and errors(typo) == [
        "error: mysettings_sentence_classification.py: hparams: --hparam embed_dimm=4: expected a key of the "
        "settings' hparams (embed_dim, learningRate, nbEpoch), got 'embed_dimm' (did you mean 'embed_dim'?); a new "
        "hparam is added explicitly: --hparam +embed_dimm=... ({'+embed_dimm': ...} in Python)"], typo.stderr
    lines = ["def get_metrics(model, loss):", "    return ['categorical_accuracy']",
             "monitored_loss_name = 'val_loss'"]
    wrong = settings_variant(text.root, "wrong_metric.py", lines, base=TEXT)
    metric = cli(text.root, "train", "-u", str(wrong))
    assert metric.returncode == 2 and errors(metric) == [
        "error: wrong_metric.py: get_metrics: categorical_accuracy: expected one-hot labels shaped like the outputs, "
        "got class ids (int32[32] labels, float32[32, 3] outputs): use 'sparse_categorical_accuracy' (or 'accuracy', "
        "which Keras picks from the shapes)"], metric.stderr
    assert sorted((text.root / TEXT_FOLDER).iterdir()) == before  # the folders they announced are gone


def errors(result: subprocess.CompletedProcess) -> list:
    """The `error:` lines of a command's stderr (the first line announces the new run's folder)."""
    return [line for line in result.stderr.splitlines() if not line.startswith("Experiment folder: ")]
