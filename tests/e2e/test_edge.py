"""Edge export: `export --all` of the regression, classification and timeseries examples through the command line,
every number of its parity report recomputed here from the files (LiteRT and onnxruntime called directly, the
SavedModel's `serving_default` in this process); the Kafka example's input names kept; a Flex op refused in one line;
bad input one line, exit 2, nothing half-written; `predict --edge` answers as the served version.

Each example is trained once for the module (in this process, 2-3 epochs, few samples); each `export --all` is one
subprocess, with short timings.
"""

import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, cli_env, run_command, settings_variant
from experiments_manager.run.version_records import CLASS_NAMES_FILE

pytestmark = pytest.mark.slow  # its module fixtures train several runs (make test-fast leaves it out)

EXAMPLES = {  # name: (settings file, extra lines, epochs): trained enough that int8 is judged on a real model
    "classification": ("examples/classification/mysettings_image_classification.py",
                       ["class_names = ['horizontal', 'vertical', 'blob']"], 3),
    "timeseries": ("examples/timeseries/mysettings_timeseries_forecasting.py", ["signal_length = 2500"], 2),
}
TARGETS = ["litert-none", "litert-fp16", "litert-int8", "litert-int8-full", "onnx-none", "onnx-int8"]
TIMING = "0.05"


def _train(root: Path, name: str, base: str, lines: list, epochs: int) -> Path:
    from experiments_manager import training

    settings = settings_variant(root, f"edge_{name}.py", lines + ["histogram_freq = 0"], base=base)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        outcome = training.train(str(settings), {"nbEpoch": epochs})
    assert outcome.status == "finished"
    return root / outcome.experiment.root


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, trained: types.SimpleNamespace) -> dict:
    """The three examples trained (the regression one: a copy of the session's `trained` run), each exported with
    `export --all` in one subprocess: name -> namespace(dir, result)."""
    root = tmp_path_factory.mktemp("edge")
    shutil.copytree(REPO / "examples", root / "examples")
    dirs = {"regression": root / "regression_run"}
    shutil.copytree(trained.dir, dirs["regression"], ignore=shutil.ignore_patterns("lease.json*"))
    for name, (base, lines, epochs) in EXAMPLES.items():
        dirs[name] = _train(root, name, base, lines, epochs)
    found = {}
    for name, folder in dirs.items():
        result = run_command(["export", str(folder), "--all", "--timing-seconds", TIMING], cwd=root,
                             env=cli_env(), capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        found[name] = types.SimpleNamespace(dir=folder, result=result)
    return found


def _validation(run: Path) -> tuple:
    """(inputs {name: array}, labels) of the run's whole validation pipeline, from its settings' own function."""
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings import load_experiment_settings

    settings = load_experiment_settings(Experiment.open(run))
    dataset = settings.data.get_input_pipeline(settings.data.val_dir, False, settings.training.batch_size, 1)
    xs, ys = zip(*((np.asarray(x), np.asarray(y)) for x, y in dataset))
    return np.concatenate(xs), np.concatenate(ys)


def _saved_model_outputs(version_dir: Path, name: str, x: np.ndarray) -> dict:
    import tensorflow as tf

    function = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return {key: value.numpy() for key, value in function(**{name: tf.constant(x)}).items()}


def _file_outputs(path: Path, name: str, x: np.ndarray) -> dict:
    """The file's outputs for the whole set in one call (a dynamic batch), run by LiteRT or onnxruntime directly."""
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        assert [node.name for node in session.get_inputs()] == [name]
        return dict(zip(names, session.run(names, {name: x})))
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    detail = runner.get_input_details()[name]
    scale, zero = detail["quantization"]
    if detail["dtype"] == np.int8:
        x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    outputs = {}
    for key, value in runner(**{name: x}).items():
        scale, zero = runner.get_output_details()[key]["quantization"]
        outputs[key] = (value.astype(np.float32) - zero) * scale if value.dtype == np.int8 else value
    return outputs


def _best_version(run: Path) -> int:
    from experiments_manager.run.version_records import reported_version

    info = json.loads((run / "run.json").read_text())
    return reported_version(info, run / "exported_models")[0]


@pytest.mark.parametrize("example", ["regression", "classification", "timeseries"])
@pytest.mark.claim(
    "`export RUN` converts the best version's `serving_default` to every format and quantization (LiteRT none / "
    'fp16 / int8 / int8-full, ONNX none / int8) of the regression, classification and timeseries examples',
    note='(`export --all` through the command line, one process per example; the files run here by LiteRT and '
         'onnxruntime directly: fp32 max abs diff <= 1e-5, fp16 <= 1e-2 of the largest output, int8 accuracy '
         'within 1 point, MSE within 10 %)')
@pytest.mark.claim(
    "the report's max / mean abs diff and compiled metrics are what the files compute on the validation pipeline; "
    'top-1 agreement for a classifier only',
    note='(max and mean abs diff, metrics and top-1 agreement recomputed against the SavedModel called in this '
         'process)')
@pytest.mark.claim(
    'batch-1 latency p50 / p99 and throughput at the training batch size',
    note="(weak: positive and ordered; the values themselves are BENCHMARKS.md's)")
@pytest.mark.claim(
    '`RUN/edge/<format>-<quantization>/`: the model file, `signature.json`, `labels.txt` (class_names), '
    '`parity.md` + `.json`; written whole, nothing half-written')
@pytest.mark.claim('`export --all` prints one side-by-side table, also `RUN/edge/parity.md` + `.json`')
@pytest.mark.claim(
    'the batch dimension stays dynamic; input and output names are kept',
    note='(the whole validation set in one call)')
def test_export_all_writes_every_format_and_its_report_says_what_the_files_compute(runs: dict, example: str) -> None:
    run = runs[example].dir
    version = _best_version(run)
    edge = run / "edge"
    table = json.loads((edge / "parity.json").read_text())["rows"]
    assert [(row["format"], row["quantize"]) for row in table] == [("savedmodel", "none")] + [
        tuple(target.split("-", 1)) for target in TARGETS]
    for text in (runs[example].result.stdout, (edge / "parity.md").read_text()):  # header, reference, the targets
        assert sum(line.startswith("| ") for line in text.splitlines()) == len(TARGETS) + 2
    assert f"table: {edge / 'parity.md'}" in runs[example].result.stdout
    assert not [path.name for path in edge.iterdir() if path.name.startswith(".")]  # nothing half-written

    signature = json.loads((edge / "litert-none" / "signature.json").read_text())
    (name,) = [tensor["name"] for tensor in signature["savedmodel"]["inputs"]]
    x, labels = _validation(run)
    reference = _saved_model_outputs(run / "exported_models" / str(version), name, x)
    scored = sorted(reference)[0]
    classifier = example == "classification"

    def quality(outputs: dict) -> float:
        if classifier:
            return float(np.mean(np.argmax(outputs[scored], axis=1) == labels))
        return float(np.mean((outputs[scored] - labels.reshape(outputs[scored].shape)) ** 2))

    expected = quality(reference)
    largest = max(float(np.max(np.abs(value))) for value in reference.values())
    for row, target in zip(table[1:], TARGETS):
        folder = edge / target
        path = run / row["file"]
        assert path.parent == folder and path.stat().st_size == row["size_bytes"]
        assert json.loads((folder / "parity.json").read_text())["rows"][1] == row
        own = json.loads((folder / "signature.json").read_text())
        assert own["version"] == row["version"] == version and own["savedmodel"] == signature["savedmodel"]
        assert [tensor["name"] for tensor in own["model"]["inputs"]] == [name]
        outputs = _file_outputs(path, name, x)
        assert sorted(outputs) == sorted(reference)
        diffs = np.concatenate([np.abs(outputs[key].astype(np.float64) - reference[key]).ravel() for key in reference])
        diff = float(diffs.max())
        assert diff == pytest.approx(row["max_abs_diff"], rel=0.05, abs=1e-6), target
        assert float(diffs.mean()) == pytest.approx(row["mean_abs_diff"], rel=0.05, abs=1e-7), target
        if classifier:
            agreement = float(np.mean(np.argmax(outputs[scored], axis=1) == np.argmax(reference[scored], axis=1)))
            assert row["top1_agreement"] == pytest.approx(agreement, abs=1.5 / len(x)), target  # a tie at most
        if target.endswith("-none"):
            assert diff <= 1e-5, target
        elif target.endswith("-fp16"):
            assert diff <= 1e-2 * largest, target
        elif classifier:
            assert abs(quality(outputs) - expected) <= 0.01, (target, quality(outputs), expected)
        else:
            assert quality(outputs) <= 1.1 * expected, (target, quality(outputs), expected)
        metric = "accuracy" if classifier else "loss"  # the examples' compiled metric and loss (MSE)
        assert row["metrics"][metric] == pytest.approx(quality(outputs), rel=1e-3, abs=1e-6), target
        assert row["dynamic_batch"] is True and row["flex_ops"] == [] and row["samples"] == len(x)
        assert row["latency_p50_ms"] > 0 and row["latency_p99_ms"] >= row["latency_p50_ms"] and row["throughput"] > 0
        assert (row["top1_agreement"] is not None) == classifier
        assert row["runtime"].startswith("ai-edge-litert" if target.startswith("litert") else "onnxruntime")
        assert (folder / "labels.txt").exists() == classifier
    assert table[0]["metrics"][("accuracy" if classifier else "loss")] == pytest.approx(expected, rel=1e-3)
    if classifier:
        assert (edge / "litert-int8" / "labels.txt").read_text().split() == ["horizontal", "vertical", "blob"]


@pytest.mark.claim('the batch dimension stays dynamic; input and output names are kept')
def test_the_kafka_examples_input_and_output_names_are_kept(tmp_path: Path, trained: types.SimpleNamespace) -> None:
    from experiments_manager.edge.export import export_edge
    from experiments_manager.edge.formats import EdgeTarget

    shutil.copytree(REPO / "examples", tmp_path / "examples")
    lines = ["consume_data_from_kafka = False", "nb_train_samples = 200", "nb_val_samples = 100"]  # no broker
    run = _train(tmp_path, "kafka", "examples/kafka/mysettings_kafka_curve_fitting.py", lines, 1)
    export_edge(run, [EdgeTarget("litert"), EdgeTarget("onnx")], timing_seconds=0.01)
    x = np.linspace(-2, 2, 7, dtype=np.float32).reshape(-1, 1)
    reference = _saved_model_outputs(run / "exported_models" / str(_best_version(run)), "input", x)
    for target, path in (("litert-none", "model.tflite"), ("onnx-none", "model.onnx")):
        signature = json.loads((run / "edge" / target / "signature.json").read_text())
        for side in ("savedmodel", "model"):
            assert [tensor["name"] for tensor in signature[side]["inputs"]] == ["input"]
            assert [tensor["name"] for tensor in signature[side]["outputs"]] == sorted(reference)
        outputs = _file_outputs(run / "edge" / target / path, "input", x)
        np.testing.assert_allclose(outputs[sorted(reference)[0]], reference[sorted(reference)[0]], atol=1e-5)


TWO_INPUTS_MODEL = """import keras


def model(usersettings):
    zeta, alpha = keras.Input((3,), name='zeta'), keras.Input((1,), name='alpha')  # positional order: not by name
    joined = keras.layers.Concatenate()([zeta, keras.layers.Dense(4)(alpha)])
    return keras.Model([zeta, alpha], [keras.layers.Dense(1, name='sum')(joined), keras.layers.Dense(2)(zeta)])
"""
TWO_INPUTS_LINES = [  # a dict of float64 inputs, a tuple of two labels of different shapes; the default served module
    "model_file = 'two_inputs_model.py'", "get_served_module = None", "nb_train_samples = 64", "nb_val_samples = 32",
    "batch_size = 16",
    "def get_metrics(model, loss):\n    return []",
    "def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):\n"
    "    rng = np.random.default_rng(0 if isTraining else 1)\n"
    "    count = nb_train_samples if isTraining else nb_val_samples\n"
    "    x = {'zeta': rng.uniform(-1, 1, (count, 3)), 'alpha': rng.uniform(-1, 1, (count, 1))}\n"
    "    y = (x['zeta'].sum(axis=1, keepdims=True) + x['alpha'], x['zeta'][:, :2])\n"
    "    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)",
]


@pytest.fixture(scope="module")
def two_inputs_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of a real 2-input model (TWO_INPUTS_MODEL, TWO_INPUTS_LINES), trained 1 epoch in this process."""
    root = tmp_path_factory.mktemp("two_inputs")
    shutil.copytree(REPO / "examples", root / "examples")
    (root / "two_inputs_model.py").write_text(TWO_INPUTS_MODEL)
    return _train(root, "two_inputs", "examples/regression/mysettings_curve_fitting.py", TWO_INPUTS_LINES, 1)


@pytest.mark.claim(
    "a multi-input model: a dict pipeline's names kept and each value routed to its input, a tuple in the served "
    "function's positional order, float64 inputs cast to the signature's dtype; several labels: no metrics, no "
    'traceback',
    note='(a real 2-input, 2-output model; LiteRT and ONNX files run directly against the SavedModel; ONNX int8 '
         'calibrated on the float64 batches)')
def test_a_two_input_dict_models_names_and_values_are_kept(two_inputs_run: Path, tmp_path: Path) -> None:
    """A real 2-input model fed a dict of float64 arrays, with two labels: each value reaches its own input (the
    exports compute what the SavedModel does), the names are kept, a tuple goes in the served function's positional
    order, the labels give no metrics (not a traceback), int8 calibrates on the float64 batches."""
    import tensorflow as tf

    from experiments_manager.edge.data import named_inputs
    from experiments_manager.edge.export import export_edge
    from experiments_manager.edge.formats import EdgeTarget
    from experiments_manager.edge.runtime import SavedModelModel

    run = tmp_path / "run"
    shutil.copytree(two_inputs_run, run, ignore=shutil.ignore_patterns("lease.json*"))
    version = run / "exported_models" / str(_best_version(run))
    rows = export_edge(run, [EdgeTarget("litert"), EdgeTarget("onnx"), EdgeTarget("onnx", "int8")],
                       timing_seconds=0.01)
    inputs = SavedModelModel(version).tensors()["inputs"]
    assert [tensor["name"] for tensor in inputs] == ["zeta", "alpha"]  # the Keras model's order
    rng = np.random.default_rng(5)
    zeta, alpha = rng.uniform(-1, 1, (7, 3)), rng.uniform(-1, 1, (7, 1))
    named = named_inputs((zeta, alpha), inputs, "test")
    assert named["zeta"].shape == (7, 3) and named["alpha"].shape == (7, 1) and named["zeta"].dtype == np.float32
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    reference = {key: value.numpy() for key, value in served(**named).items()}
    assert all(row.metrics == {} and row.top1_agreement is None for row in rows)
    for row, target in zip(rows[1:3], ("litert-none", "onnx-none")):
        assert row.max_abs_diff <= 1e-5, target
        signature = json.loads((run / "edge" / target / "signature.json").read_text())
        assert [tensor["name"] for tensor in signature["savedmodel"]["inputs"]] == ["zeta", "alpha"]
        assert sorted(tensor["name"] for tensor in signature["model"]["inputs"]) == ["alpha", "zeta"]
        path = run / row.file
        if path.suffix == ".onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            names = [output.name for output in session.get_outputs()]
            outputs = dict(zip(names, session.run(names, named)))
        else:
            from ai_edge_litert.interpreter import Interpreter

            outputs = Interpreter(model_path=str(path)).get_signature_runner("serving_default")(**named)
        assert sorted(outputs) == sorted(reference), target
        for key in reference:
            np.testing.assert_allclose(outputs[key], reference[key], atol=1e-5, err_msg=target)
    assert rows[3].samples == 32 and rows[3].max_rel_diff < 0.2  # int8, calibrated on the float64 training batches


@pytest.mark.claim(
    'the validation pipeline is read as training reads it: an endless generator gives nb_val_samples // batch_size '
    'batches, or one line naming the export')
def test_an_endless_validation_generator_is_read_as_training_reads_it(two_inputs_run: Path) -> None:
    import dataclasses

    from experiments_manager.edge.data import validation_batches
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings import load_experiment_settings
    from experiments_manager.utils.errors import UserInputError

    settings = load_experiment_settings(Experiment.open(two_inputs_run))

    def endless(folder: str, training: bool, batch_size: int, epochs: int) -> object:  # a Keras 2 style generator
        while True:
            yield {"zeta": np.ones((batch_size, 3)), "alpha": np.ones((batch_size, 1))}, np.ones((batch_size, 1))

    inputs = [{"name": "zeta", "dtype": "float32"}, {"name": "alpha", "dtype": "float32"}]
    for samples, expected in ((32, 2), (None, None)):  # nb_val_samples 32, batch size 16: 2 batches; unset: refused
        settings.data = dataclasses.replace(settings.data, get_input_pipeline=endless, val_samples=samples)
        if expected is not None:
            assert len(validation_batches(settings, inputs)) == expected
            continue
        with pytest.raises(UserInputError) as refused:
            validation_batches(settings, inputs)
        assert refused.value.problems == [f"{settings.path.name}: nb_val_samples: expected the number of validation "
                                          "samples (the validation dataset's length is unknown; export (edge) reads "
                                          "that many)"]


@pytest.mark.claim(
    "a killed export's leftovers (`.tmp-N-<pid>`, `.deleting-*`) are removed by the next one; a single-target "
    "export removes `export --all`'s table, which no longer describes the folders; `labels.txt` comes from the "
    "version's own `class_names.json` (the server's)")
def test_a_killed_exports_leftovers_and_a_stale_table_are_removed(two_inputs_run: Path, tmp_path: Path) -> None:
    from conftest import dead_pid
    from experiments_manager.edge.export import export_edge
    from experiments_manager.edge.formats import EdgeTarget

    run = tmp_path / "run"
    shutil.copytree(two_inputs_run, run, ignore=shutil.ignore_patterns("lease.json*"))
    export_edge(run, [EdgeTarget("onnx")], timing_seconds=0.01, table=True)  # as export --all writes it
    edge = run / "edge"
    assert (edge / "parity.md").is_file() and (edge / "parity.json").is_file()
    pid = dead_pid()  # an export killed mid-write: its temporary folder, an older folder it was removing
    (edge / f".tmp-4-{pid}").mkdir()
    (edge / f".tmp-4-{pid}" / "model.onnx").write_bytes(b"half")
    (edge / f".deleting-onnx-none-{pid}").mkdir()
    names = run / "exported_models" / str(_best_version(run)) / CLASS_NAMES_FILE  # the version's own, as served
    names.parent.mkdir(exist_ok=True)
    names.write_text('["low", "high"]')
    export_edge(run, [EdgeTarget("onnx")], timing_seconds=0.01)  # one target: the table no longer says what is there
    assert sorted(path.name for path in edge.iterdir()) == ["onnx-none"]
    assert (edge / "onnx-none" / "labels.txt").read_text() == "low\nhigh\n"  # the settings give none


@pytest.mark.claim(
    'a failed ONNX int8 quantization is one line, no file left',
    note="(onnxruntime's quantizer made to fail)")
def test_a_failed_int8_quantization_is_one_line(two_inputs_run: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime.quantization

    from experiments_manager.edge.convert import convert_version
    from experiments_manager.edge.formats import EdgeTarget
    from experiments_manager.utils.errors import UserInputError

    def fails(*arguments: object, **options: object) -> None:
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : calibration\nmore lines")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", fails)
    version = two_inputs_run / "exported_models" / str(_best_version(two_inputs_run))
    batch = {"zeta": np.zeros((2, 3), np.float32), "alpha": np.zeros((2, 1), np.float32)}
    with pytest.raises(UserInputError) as refused:
        convert_version(version, EdgeTarget("onnx", "int8"), tmp_path / "model.onnx", calibration=[batch])
    assert refused.value.problems == [f"{version} (serving_default): onnxruntime's int8 quantization failed: "
                                      "RuntimeError: [ONNXRuntimeError] : 1 : FAIL : calibration"]
    assert list(tmp_path.iterdir()) == []  # nor the float file left behind


@pytest.mark.claim(
    'a Flex op is refused in one line naming it, exit 2; `--allow-flex-ops` exports it, unmeasured',
    note='(in this process, the one line of its `UserInputError`; through the command line: that line on stderr, '
         'exit 2, nothing written)')
def test_a_flex_op_is_refused_in_one_line_naming_it_and_nothing_is_written(runs: dict, tmp_path: Path) -> None:
    import tensorflow as tf

    from experiments_manager.edge.export import export_edge
    from experiments_manager.edge.formats import EdgeTarget
    from experiments_manager.utils.errors import UserInputError

    run = tmp_path / "run"
    shutil.copytree(runs["regression"].dir, run, ignore=shutil.ignore_patterns("edge", "lease.json*"))
    version = run / "exported_models" / str(_best_version(run))

    class WithDeterminant(tf.Module):  # MatrixDeterminant: no LiteRT builtin, a Flex op
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="input")])
        def served(self, input: tf.Tensor) -> dict:
            square = tf.reshape(tf.tile(input, [1, 4]), [-1, 2, 2]) + tf.eye(2)
            return {"prediction": tf.linalg.det(square)[:, None], "prediction_plus_1": input + 1}

    module = WithDeterminant()
    shutil.rmtree(version)
    tf.saved_model.save(module, str(version), signatures={"serving_default": module.served.get_concrete_function()})
    with pytest.raises(UserInputError) as refused:
        export_edge(run, [EdgeTarget("litert", "int8")], timing_seconds=0.01)
    (line,) = refused.value.problems
    assert "\n" not in line and "Flex ops MatrixDeterminant" in line and "--allow-flex-ops" in line, line
    assert not (run / "edge").exists()  # not even an empty RUN/edge/
    result = run_command(["export", str(run), "--format", "litert"], env=cli_env(), capture_output=True,
                         text=True, timeout=300)  # the command line: the same line, exit 2
    assert (result.returncode, result.stderr) == (2, f"error: {line}\n"), result.stderr
    assert not (run / "edge").exists()
    # asked for: written, said in the report; not measured, as the plain LiteRT runtime has no Flex delegate
    rows = export_edge(run, [EdgeTarget("litert")], allow_flex=True, timing_seconds=0.01)
    assert rows[1].flex_ops == ["MatrixDeterminant"] and rows[1].max_abs_diff is None
    assert "Flex delegate" in rows[1].note
    assert (run / "edge" / "litert-none" / "model.tflite").is_file()
    assert "| MatrixDeterminant |" in (run / "edge" / "litert-none" / "parity.md").read_text()


@pytest.mark.claim(
    'ONNX fp16, an unknown format, no such version, a run without a version: one line, exit 2, nothing written')
@pytest.mark.claim('a missing `[edge]` extra is one line naming the pip command, exit 2')
@pytest.mark.claim(
    "`predict --edge` needs only the file's runtime, its absence said before TensorFlow is imported",
    note='(each runtime blocked in turn, tf2onnx too: exit 2, one line, no `tensorflow` module imported)')
def test_bad_input_is_one_line_exit_2_and_nothing_half_written(runs: dict, run_cli: object, tmp_path: Path) -> None:
    run = runs["regression"].dir
    present = json.loads((run / "run.json").read_text())["exported_versions"]
    before = sorted(path.name for path in (run / "edge").iterdir())
    no_version = tmp_path / "no_version"
    shutil.copytree(run, no_version, ignore=shutil.ignore_patterns("exported_models", "edge", "lease.json*"))
    cases = [
        (["--format", "litert", "--version", "99"],
         f"{run}: --version: expected one of the exported versions {', '.join(map(str, present))}, got 99"),
        (["--format", "litrt"], "--format: expected one of litert, onnx (or tflite), got 'litrt'; did you mean "
                                "'litert'?"),
        (["--format", "onnx", "--quantize", "fp16"],
         "--quantize: expected one of none, int8 for --format onnx, got 'fp16' (ONNX fp16 needs "
         "onnxconverter-common, which the [edge] extra lacks)"),
        (["--format", "ONNX", "--quantize", "int-8"],
         "--quantize: expected one of none, int8 for --format onnx, got 'int-8'; did you mean 'int8'?"),
        (["--all", "--quantize", "int8"], "--quantize: expected none with --all (which builds every quantization), "
                                          "got 'int8'"),
    ]
    from experiments_manager.edge.formats import EdgeTarget, check_target

    assert check_target("TFLite", "INT8") == EdgeTarget("litert", "int8")  # TFLite's old name and any case read
    for flags, line in cases:
        result = run_cli("export", str(run), *flags)
        assert (result.returncode, result.stderr.strip()) == (2, f"error: {line}"), flags
    result = run_cli("export", str(no_version), "--format", "onnx")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no exported version yet (the run is finished, 3 epochs done)" in result.stderr
    assert not (no_version / "edge").exists()
    assert sorted(path.name for path in (run / "edge").iterdir()) == before

    code = ("import sys\nsys.modules['tf2onnx'] = None  # not installed\nfrom experiments_manager.cli import main\n"
            f"sys.exit(main(['export', {str(run)!r}, '--all']))\n")
    result = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (2, "error: edge export needs the [edge] extra (missing: tf2onnx): "
                                                     "pip install 'experiments_manager[edge]'\n")
    # predict --edge needs the file's runtime only, said before TensorFlow is imported
    for blocked, target, package in (("ai_edge_litert", "litert-none/model.tflite", "ai-edge-litert"),
                                     ("onnxruntime", "onnx-none/model.onnx", "onnxruntime")):
        code = (f"import sys\nsys.modules[{blocked!r}] = sys.modules['tf2onnx'] = None\n"
                "from experiments_manager.cli import main\n"
                f"code = main(['predict', '--model_dir', {str(run)!r}, '--edge', {str(run / 'edge' / target)!r}])\n"
                "assert 'tensorflow' not in sys.modules\nsys.exit(code)\n")
        result = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True)
        assert (result.returncode, result.stderr) == (
            2, f"error: predict --edge {target.split('/')[1]} needs the [edge] extra (missing: {package}): "
               "pip install 'experiments_manager[edge]'\n"), target


@pytest.mark.claim(
    "`predict --edge FILE` runs the settings' Client_IO against the file; its answers are the served version's "
    '(the `PredictResponse` a server sends)',
    note="(every file: the client's own requests answered as the SavedModel's `serving_default` does, model name "
         "and version; the command's printed errors recomputed)")
@pytest.mark.claim(
    '`predict --edge` refuses a request as the server does (its shape check, its line)',
    note="(shapes (1, 5) and (3,) for a [None, 1] input, LiteRT and ONNX: the client's line is the server path's, "
         'the server\'s own `check_inputs` message; a runtime\'s own failure: the server\'s "the model refused the '
         'input" line, not a traceback)')
@pytest.mark.claim(
    '`checksums.sha256` in each edge folder; `predict --edge` refuses a copied folder whose files differ, in one '
    'line')
def test_predict_edge_answers_as_the_served_version(runs: dict, run_cli: object, tmp_path: Path) -> None:
    import tensorflow as tf

    from experiments_manager.edge.predict import EdgeClient, LocalPredictionService
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.settings import load_experiment_settings

    run = runs["regression"].dir
    version = _best_version(run)
    served = tf.saved_model.load(str(run / "exported_models" / str(version))).signatures["serving_default"]
    settings = load_experiment_settings(Experiment.open(run))

    # the Client_IO's requests, as the client builds them, answered by each file: the server's answers (in process)
    client_io = settings.serving.client_io({}, False)
    for target in TARGETS:
        path = next((run / "edge" / target).glob("model.*"))
        service = LocalPredictionService(path, threads=1)
        client = EdgeClient(settings, service, "model_curve_fitting")
        for index in range(3):
            request = client._request(index, client_io.getInputData(index))
            response = service.Predict(request)
            assert (response.model_spec.name, response.model_spec.version.value) == ("model_curve_fitting", version)
            expected = served(input=tf.make_ndarray(request.inputs["input"]))
            for name, value in expected.items():
                got = tf.make_ndarray(response.outputs[name])
                assert got.shape == value.shape and got.dtype == np.float32
                tolerance = 1e-5 if target.endswith("-none") else 0.1
                np.testing.assert_allclose(got, value.numpy(), atol=tolerance, err_msg=target)

    # the command: the settings' Client_IO decodes the local answers as it decodes the server's
    result = run_cli("predict", "--model_dir", str(run), "--edge", str(run / "edge/litert-none/model.tflite"),
                     "--predict_stream", "3")
    assert result.returncode == 0, result.stderr
    printed = [float(line.rsplit(" ", 1)[1]) for line in result.stdout.splitlines() if line.startswith("mean abs")]
    rng = np.random.default_rng(0)  # the example's Client_IO: seed 0, batch_size x values per request
    for error in printed:
        x = rng.uniform(-2, 2, size=[settings.training.batch_size, 1]).astype(np.float32)
        assert error == pytest.approx(float(np.mean(np.abs(served(input=x)["prediction"].numpy() - x ** 2))), abs=1e-4)
    assert len(printed) == 3 and "Prediction process ended" in result.stdout
    assert f"3 requests answered by {run / 'edge'}" in result.stdout
    assert f"converted from model_curve_fitting version {version}; latency p50 " in result.stdout
    # a bad shape: the server's own check and line (the model's runtime never sees it), for every format
    from experiments_manager.serving.client import ClientError, StreamReport
    from experiments_manager.serving.errors import RequestError
    from experiments_manager.serving.servable import Servable

    servable = Servable.load("model_curve_fitting", version, run / "exported_models" / str(version))
    for target in ("litert-none", "onnx-none"):
        service = LocalPredictionService(next((run / "edge" / target).glob("model.*")), threads=1)
        client = EdgeClient(settings, service, "model_curve_fitting")
        for shape in ((1, 5), (3,)):
            arrays = {"input": np.ones(shape, np.float32)}
            with pytest.raises(RequestError) as server:
                servable.check_inputs("serving_default", arrays)
            with pytest.raises(ClientError) as local:
                client._predict(service, 0, arrays, StreamReport())
            assert str(local.value) == f"request 0 refused by {service.path}: INVALID_ARGUMENT: " \
                                       f"{server.value.message}", (target, shape)

        def fails(arrays: dict) -> dict:  # what a runtime raises for an input it cannot run (XNNPack, onnxruntime)
            raise RuntimeError("failed to invoke the interpreter\nnode 3: more")

        service.model.predict = fails
        with pytest.raises(ClientError) as local:
            client._predict(service, 0, {"input": np.ones((2, 1), np.float32)}, StreamReport())
        assert str(local.value) == f"request 0 refused by {service.path}: INVALID_ARGUMENT: the model refused the " \
                                   "input: failed to invoke the interpreter"
    result = run_cli("predict", "--model_dir", str(run), "--edge", str(run / "edge/litert-none/model.tflite"),
                     "--server", "127.0.0.1:8500")
    assert (result.returncode, result.stderr) == (2, "error: --server: expected no server flag with --edge (answered "
                                                     "on this machine), got --server\n")
    # a folder copied to a device with a damaged file: refused by its checksums, not answered with garbage
    from experiments_manager.edge.predict import predict_on_device
    from experiments_manager.utils.errors import UserInputError

    copy = tmp_path / "device" / "litert-none"
    shutil.copytree(run / "edge" / "litert-none", copy)
    assert "model.tflite" in (copy / "checksums.sha256").read_text()
    model = bytearray((copy / "model.tflite").read_bytes())
    model[len(model) // 2] ^= 0xFF
    (copy / "model.tflite").write_bytes(bytes(model))
    with pytest.raises(UserInputError) as damaged:
        predict_on_device(run, copy / "model.tflite")
    assert str(damaged.value).startswith(f"--edge: {copy}: ") and "model.tflite" in str(damaged.value)


@pytest.mark.claim(
    "int8 is calibrated on a bounded number of the training pipeline's batches, the run's seed set first",
    note='(exported again: the same file byte for byte; with `calibration_batches=2`: another)')
@pytest.mark.claim(
    "the run's lease is held while exporting",
    note='(a live holder: `LeaseHeld`, exit code 75, one line, the folder untouched)')
def test_int8_calibration_is_seeded_and_the_runs_lease_is_held(runs: dict, tmp_path: Path) -> None:
    from experiments_manager.edge.export import export_edge
    from experiments_manager.edge.formats import EdgeTarget
    from experiments_manager.utils.lease import LeaseHeld

    run = tmp_path / "run"
    shutil.copytree(runs["regression"].dir, run, ignore=shutil.ignore_patterns("lease.json*"))
    first = (run / "edge" / "litert-int8" / "model.tflite").read_bytes()  # the export --all of the fixture
    export_edge(run, [EdgeTarget("litert", "int8")], timing_seconds=0.01)  # the same batches: the same file
    assert (run / "edge" / "litert-int8" / "model.tflite").read_bytes() == first
    export_edge(run, [EdgeTarget("litert", "int8")], calibration_batches=2, timing_seconds=0.01)
    assert (run / "edge" / "litert-int8" / "model.tflite").read_bytes() != first  # fewer batches: other ranges

    before = (run / "edge" / "onnx-none" / "parity.json").read_text()
    holder = subprocess.Popen(  # a live writer of the run (a training, an evaluation)
        [sys.executable, "-c", "import sys, time\nfrom experiments_manager.run.experiment import Experiment\n"
         f"with Experiment.open({str(run)!r}).held(['holder']):\n    print('held', flush=True)\n    time.sleep(60)\n"],
        env=cli_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(LeaseHeld) as refused:
            export_edge(run, [EdgeTarget("onnx")], timing_seconds=0.01)
        assert refused.value.exit_code == 75 and len(refused.value.problems) == 1
    finally:
        holder.kill()
        holder.wait()
    assert (run / "edge" / "onnx-none" / "parity.json").read_text() == before  # refused before writing
