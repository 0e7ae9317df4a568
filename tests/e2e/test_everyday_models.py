"""The models researchers write every day, through the whole loop: a top-level `keras.Sequential` with augmentation,
batch norm and dropout; a functional model around a nested augmentation `Sequential` and a nested `Sequential`
backbone; a model with its own `train_step` returning only its loss; two-phase transfer learning (a frozen backbone,
a new head with `--skip-mismatch`); a multi-output model with `loss_weights`; mixed precision set by the settings file.

Each model reads PNG class folders with `image_dataset_from_directory`, is trained 2 epochs in-process, then
evaluated, loaded (`em.load`), fine-tuned from (`init_from`), served (an in-process server's REST and gRPC) and
exported (LiteRT); every reading back is compared with the version's own SavedModel (`serving_default`, what a
server answers) on the same images, to 1e-5. Seeds: the data's (`PNG_SEED`) and the settings' `random_seed`.
"""

import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import REPO, settings_variant

pytestmark = pytest.mark.slow  # its module fixture trains several runs (make test-fast leaves it out)

EVERYDAY = REPO / "tests" / "data" / "everyday"
MODELS = REPO / "tests" / "data" / "models"
COLOURS = {"cyan": (0, 255, 255), "magenta": (255, 0, 255), "yellow": (255, 255, 0), "grey": (128, 128, 128)}
PNG_SEED = 57
TOLERANCE = 1e-5


def write_pngs(folder: Path, per_class: int = 12) -> None:
    """`folder/<colour>/<n>.png`: 8x8 images of the colour with seeded noise."""
    import tensorflow as tf

    rng = np.random.default_rng(PNG_SEED)
    for name, colour in COLOURS.items():
        (folder / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 40, size=(8, 8, 3)), 0, 255).astype(np.uint8)
            (folder / name / f"{index}.png").write_bytes(tf.io.encode_png(pixels).numpy())


def probe_images() -> np.ndarray:
    """Images no run saw: noisy colours, float32 0-255 as `image_dataset_from_directory` gives them."""
    rng = np.random.default_rng(PNG_SEED + 1)
    return np.stack([np.clip(np.array(colour) + rng.normal(0, 40, size=(8, 8, 3)), 0, 255)
                     for colour in list(COLOURS.values()) * 2]).astype(np.float32)


def served(version_folder: Path, images: np.ndarray) -> np.ndarray:
    """The version's `serving_default` answer, as a server loads it (its one output)."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_folder)).signatures["serving_default"]
    outputs = signature(**{input_name(version_folder): tf.constant(images)})
    assert list(outputs) == ["output_0"] and outputs["output_0"].dtype == tf.float32, outputs
    return outputs["output_0"].numpy()


def input_name(version_folder: Path) -> str:
    """The one input's name in the version's `serving_default` (a Sequential's `Input` is named by Keras)."""
    import tensorflow as tf

    (name, _), = tf.saved_model.load(str(version_folder)).signatures["serving_default"].structured_input_signature[
        1].items()
    return name


def best_version(run: Path) -> Path:
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.version_records import chosen_version

    experiment = Experiment.open(run)
    return experiment.export_dir / str(chosen_version(experiment)[0])


def assert_same(got, expected) -> None:
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=TOLERANCE, atol=TOLERANCE)


def train(root: Path, settings: Path, hparams: dict, **options) -> Path:
    import experiments_manager as em

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        outcome = em.train(str(settings), hparams, **options)
    assert outcome.status == "finished", outcome
    return root / outcome.experiment.root


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> types.SimpleNamespace:
    """The three model kinds trained 2 epochs on three colour classes."""
    root = tmp_path_factory.mktemp("everyday")
    shutil.copytree(EVERYDAY, root, dirs_exist_ok=True)
    write_pngs(root / "pngs")
    kinds = {kind: train(root, root / settings_of(kind), {"kind": kind}) for kind in KINDS}
    return types.SimpleNamespace(root=root, runs=kinds)


KINDS = ("sequential", "nested", "own_step", "subclassed")


def settings_of(kind: str) -> str:
    """The settings file of a model kind (a subclassed model has no `Input`: its settings give the signature)."""
    return "settings_subclassed.py" if kind == "subclassed" else "settings_everyday.py"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.claim("a top-level Sequential model, a functional model around nested Sequential models (augmentation "
                   "layers, a backbone), a model with its own `train_step` and a subclassed model go train -> "
                   "evaluate -> `em.load` -> `--init-from` -> serve -> export, each reading back answering as the "
                   "served version",
                   note="(PNG class folders; em.load against the version's SavedModel, a run fine-tuned from it at "
                        "learning rate 0 holding its weights, the SavedModel twice on the same images: augmentation "
                        "and dropout off when served; an in-process server's REST answers; LiteRT within 1e-4; the "
                        "model's graph in the TensorBoard events)")
def test_everyday_kinds_evaluate_load_init_from_and_serve_as_the_version_answers(runs: types.SimpleNamespace,
                                                                                kind: str,
                                                                                model_server: object) -> None:
    import experiments_manager as em
    from experiments_manager.edge.export import export_edge
    from experiments_manager.edge.formats import EdgeTarget
    from experiments_manager.serving.config import source_from_experiment

    run = runs.runs[kind]
    images = probe_images()
    answers = served(best_version(run), images)
    assert_same(served(best_version(run), images), answers)  # inference mode: the same input, the same answer
    assert_same(em.load(run).predict(images, verbose=0), answers)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(runs.root)
        evaluation = em.evaluate(run)
    assert 0 < evaluation.metrics["loss"] < 10, evaluation.metrics
    frozen = settings_variant(runs.root, f"frozen_{kind}.py", ["def get_learningRate():", "    return 0.0"],
                              base=settings_of(kind))
    again = train(runs.root, runs.root / frozen, {"kind": kind, "nbEpoch": 1}, init_from=str(run))
    source, fine_tuned = em.load(run), em.load(again)
    for variable, value in zip(fine_tuned.weights, source.weights):  # batch norm's statistics move at rate 0 too
        if "moving" not in variable.path:
            assert_same(variable, value)
    server = model_server([source_from_experiment(run)])
    reply = requests.post(f"{server.rest_url}/v1/models/model_everyday:predict",
                          json={"instances": images.tolist()}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert_same(reply.json()["predictions"], answers)
    # the Graphs tab shows every kind: the served function's graph (a subclassed model's too: its signature declares
    # the inputs its class does not)
    assert graph_written(run)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(runs.root)
        rows = export_edge(run, [EdgeTarget("litert", "none")], timing_seconds=0.05)
    assert rows[1].max_abs_diff < 1e-4, rows[1]


def graph_written(run: Path) -> bool:
    """True when the run's `train` TensorBoard events hold the model's graph (what the Graphs tab shows)."""
    import tensorflow as tf

    return any(event.graph_def for path in (run / "logs" / "train").glob("events.out.tfevents.*")
               for event in tf.compat.v1.train.summary_iterator(str(path)))


@pytest.mark.claim("two-phase transfer learning: a new run `--init-from` a run with a frozen backbone and a new head "
                   "(`--skip-mismatch`) loads every weight that fits, leaves the head as the new model made it, and "
                   "lists it in the log and run.json",
                   note="(phase 1: 3 classes; phase 2: 4 classes, the backbone frozen: its weights in phase 2's "
                        "version equal phase 1's; `diff` of the two runs shows the hparams changed and the lineage)")
def test_two_phase_transfer_loads_the_backbone_and_skips_the_new_head(runs: types.SimpleNamespace,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    import experiments_manager as em
    from experiments_manager.runs.diff import diff_runs
    from experiments_manager.utils.errors import UserInputError

    source = runs.runs["nested"]
    phase2 = settings_variant(runs.root, "phase2.py", ["class_names = ['cyan', 'magenta', 'yellow', 'grey']"],
                              base="settings_everyday.py")
    hparams = {"kind": "nested", "classes": 4, "train_backbone": False, "nbEpoch": 1}
    with pytest.raises(UserInputError) as refused, pytest.MonkeyPatch.context() as patch:
        patch.chdir(runs.root)
        em.train(str(phase2), hparams, init_from=str(source))
    assert "head/kernel: expected the new model's shape (6, 4), got (6, 3) (1 more weight left out); to load only " \
           "the weights that fit (a new head), add --skip-mismatch" in str(refused.value), refused.value
    with caplog.at_level("INFO", logger="experiments_manager"):
        fine_tuned = train(runs.root, runs.root / phase2, hparams, init_from=str(source), skip_mismatch=True)
    record = json.loads((fine_tuned / "run.json").read_text())["fine_tuned_from"]
    assert record["skip_mismatch"] is True and record["skipped"] == [
        "head/kernel: expected the new model's shape (6, 4), got (6, 3)",
        "head/bias: expected the new model's shape (4,), got (3,)"], record
    assert "--skip-mismatch: 2 weights of the new model left as it made them" in caplog.text
    shown = diff_runs(source, fine_tuned).render()  # the lineage, beside the settings that changed
    assert "+classes = 4   # --hparam" in shown, shown
    assert [line for line in shown.splitlines() if line.startswith("+fine-tuned")] == [
        f"+fine-tuned from = {source} version {chosen_version_number(source)}",
        "+fine-tuned weights loaded = 6 of 8", "+fine-tuned block backbone = 6/6", "+fine-tuned block head = 0/2",
        "+fine-tuned left as built = head/kernel: expected the new model's shape (6, 4), got (6, 3)",
        "+fine-tuned left as built = head/bias: expected the new model's shape (4,), got (3,)"], shown
    before, after = em.load(source), em.load(fine_tuned)
    for old, new in zip(before.get_layer("backbone").weights, after.get_layer("backbone").weights):
        np.testing.assert_array_equal(np.asarray(new), np.asarray(old))  # frozen: phase 1's values
    assert after.predict(probe_images(), verbose=0).shape == (8, 4)


@pytest.mark.claim("a resume that does not fit the changed model (`--settings-source original` with a new layer) is "
                   "one line naming the weight and `--init-from` as the way forward, and leaves the run byte-for-byte "
                   "as it was", note="(and with another optimizer: SGD where Adam trained)")
def test_a_refused_resume_leaves_the_run_as_it_was(runs: types.SimpleNamespace, tmp_path: Path) -> None:
    from experiments_manager import training
    from experiments_manager.utils.errors import UserInputError

    run = tmp_path / "run"
    shutil.copytree(runs.runs["sequential"], run)
    info = json.loads((run / "run.json").read_text())
    snapshot = {path: path.read_bytes() for path in sorted(run.rglob("*")) if path.is_file()}
    changes = {  # the user's file, a change its checkpoint cannot take, what the line names
        Path(info["model_file"]): ("keras.layers.ReLU(),", "keras.layers.ReLU(), keras.layers.Dense(6),", "kernel"),
        Path(info["settings_file"]): ("keras.optimizers.Adam(learning_rate=learning_rate)",
                                      "keras.optimizers.SGD(learning_rate=learning_rate)", "optimizer.npz holds"),
    }
    for user_file, (old, new, named) in changes.items():
        original = user_file.read_text()
        try:
            user_file.write_text(original.replace(old, new))
            with pytest.raises(UserInputError) as refused, pytest.MonkeyPatch.context() as patch:
                patch.chdir(runs.root)
                training.resume(run, settings_source="original", accept_code_change=True, more_epochs=1)
        finally:
            user_file.write_text(original)
        message = str(refused.value)
        assert len(message.splitlines()) == 1 and "the changed code cannot continue the run from its checkpoint" in \
            message and named in message and f"--init-from {run}" in message, message
        assert {path: path.read_bytes() for path in sorted(run.rglob("*")) if path.is_file()} == snapshot


@pytest.mark.claim("`class_names` that disagree with the dataset's own (`image_dataset_from_directory` numbers "
                   "folders in sorted order) are one line before epoch 1, no folder")
def test_class_names_that_disagree_with_the_datasets_are_refused(runs: types.SimpleNamespace) -> None:
    import experiments_manager as em
    from experiments_manager.utils.errors import UserInputError

    variant = settings_variant(runs.root, "unsorted.py", [
        "class_names = ['yellow', 'cyan', 'magenta', 'grey']",
        "def get_input_pipeline(raw_data_files_folder, isTraining, batch_size, nbEpoch):",
        "    return keras.utils.image_dataset_from_directory(raw_data_files_folder, image_size=(8, 8), "
        "batch_size=batch_size, verbose=False)"], base="settings_everyday.py")
    before = sorted((runs.root / "experiments").iterdir())
    with pytest.raises(UserInputError) as refused, pytest.MonkeyPatch.context() as patch:
        patch.chdir(runs.root)
        em.train(str(variant), {"classes": 4})
    assert "class_names: expected the dataset's own class names in its order (cyan, grey, magenta, yellow), got " \
           "yellow, cyan, magenta, grey" in str(refused.value), refused.value
    assert sorted((runs.root / "experiments").iterdir()) == before


@pytest.mark.claim("mixed precision set by the settings file (`keras.mixed_precision.set_global_policy`) is recorded "
                   "in run.json; its versions serve float32 (REST numbers, gRPC `float_val`); `em.load` leaves the "
                   "caller's policy alone; LiteRT converts its float32 weights",
                   note="(the Sequential model; LiteRT within 1e-2 of the float16 SavedModel)")
def test_mixed_precision_serves_float32_and_exports_litert(runs: types.SimpleNamespace, model_server: object) -> None:
    import keras

    variant = settings_variant(runs.root, "mixed.py", ["keras.mixed_precision.set_global_policy('mixed_float16')"],
                               base="settings_everyday.py")
    try:
        _mixed_precision_run_serves_float32_and_exports_litert(runs, model_server, variant)
    finally:  # the settings file set Keras' global policy when `train` ran it (in this process)
        keras.config.set_dtype_policy("float32")


def _mixed_precision_run_serves_float32_and_exports_litert(runs: types.SimpleNamespace, model_server: object,
                                                           variant: Path) -> None:
    import grpc
    import keras
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    import experiments_manager as em
    from experiments_manager.edge.export import export_edge
    from experiments_manager.edge.formats import EdgeTarget
    from experiments_manager.serving.config import source_from_experiment
    from serving_helpers import predict_request

    keras.config.set_dtype_policy("float32")
    run = train(runs.root, runs.root / variant, {"kind": "sequential"})
    keras.config.set_dtype_policy("float32")  # as the caller had it before `train` ran the settings file
    assert json.loads((run / "run.json").read_text())["mixed_precision"] is True
    images = probe_images()
    answers = served(best_version(run), images)  # asserts float32 outputs
    loaded = em.load(run)
    assert keras.config.dtype_policy().name == "float32"
    assert loaded.compute_dtype == "float16"
    assert_same(loaded.predict(images, verbose=0), answers)
    server = model_server([source_from_experiment(run)])
    channel = grpc.insecure_channel(server.grpc_address)
    reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
        predict_request("model_everyday", {input_name(best_version(run)): images}), timeout=30)
    assert len(reply.outputs["output_0"].float_val) == answers.size
    assert_same(tf.make_ndarray(reply.outputs["output_0"]), answers)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(runs.root)
        rows = export_edge(run, [EdgeTarget("litert", "none")], timing_seconds=0.05)
    assert keras.config.dtype_policy().name == "float32"
    assert rows[1].max_abs_diff < 1e-2, rows[1]
    assert [path.name for path in (run / "edge").iterdir()] == ["litert-none"]  # the float32 copy removed


@pytest.mark.claim("`loss_weights` (by output name) weighs each output's loss in the loss trained and the monitored "
                   "`val_loss`; a name no output has is one line before epoch 1",
                   note="(two outputs: val_loss = val_value_loss + 0.25 * val_positive_loss in history.csv; a "
                        "wrong key in loss_weights and in get_total_loss' dict: exactly one line each)")
def test_loss_weights_weigh_the_outputs_losses(tmp_path: Path) -> None:
    import csv

    import experiments_manager as em
    from experiments_manager.utils.errors import UserInputError

    shutil.copytree(MODELS, tmp_path, dirs_exist_ok=True)
    weighted = settings_variant(tmp_path, "weighted.py", ["loss_weights = {'value': 1.0, 'positive': 0.25}"],
                                base="settings_custom.py")
    run = train(tmp_path, tmp_path / weighted, {"nbEpoch": 1})
    with open(run / "history.csv") as file:
        row, = csv.DictReader(file)
    assert abs(float(row["val_loss"]) - float(row["val_value_loss"]) - 0.25 * float(row["val_positive_loss"])) < 1e-4
    wrong = settings_variant(tmp_path, "wrong.py", ["loss_weights = {'valu': 1.0}"], base="settings_custom.py")
    with pytest.raises(UserInputError) as refused, pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        em.train(str(wrong))
    assert refused.value.problems == ["wrong.py: loss_weights: expected the model's output names (positive, value) "
                                      "as keys, got 'valu' (did you mean 'value'?)"], refused.value.problems
    losses = settings_variant(tmp_path, "losses.py", ["def get_total_loss(model):",
                                                      "    return {'valu': 'mse', 'positive': 'binary_crossentropy'}"],
                              base="settings_custom.py")
    with pytest.raises(UserInputError) as refused, pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        em.train(str(losses))
    assert refused.value.problems == ["losses.py: get_total_loss: expected the model's output names (positive, value) "
                                      "as keys, got 'valu' (did you mean 'value'?)"], refused.value.problems


@pytest.mark.claim("a served module that cannot be exported (a variable its function reads that the module does not "
                   "hold) is one line before epoch 1, no folder",
                   note="(the dry build saves the served module once into a temporary folder)")
def test_a_served_module_that_cannot_be_exported_stops_before_epoch_1(runs: types.SimpleNamespace) -> None:
    import experiments_manager as em
    from experiments_manager.utils.errors import UserInputError

    variant = settings_variant(runs.root, "unexportable.py", [
        "_scale = tf.Variable(2.0)  # held by no module: the saver cannot reach it",
        "class Served(tf.Module):",
        "    def __init__(self, model):",
        "        super().__init__()",
        "        self.model = model",
        "    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])",
        "    def served_model(self, images):",
        "        return {'scores': self.model(images, training=False) * _scale}",
        "def get_served_module(model, model_name):",
        "    return Served(model)"], base="settings_everyday.py")
    before = sorted((runs.root / "experiments").iterdir())
    with pytest.raises(UserInputError) as refused, pytest.MonkeyPatch.context() as patch:
        patch.chdir(runs.root)
        em.train(str(variant))
    assert len(refused.value.problems) == 1 and refused.value.problems[0].startswith(
        "unexportable.py: get_served_module: expected a served module that can be exported as a SavedModel, got: "
        "AssertionError: "), refused.value.problems
    assert "'untracked'" in refused.value.problems[0] and refused.value.problems[0].endswith(
        "by assigning them to an attribute of a tracked object or assigned to an attribute of the main object "
        "directly."), refused.value.problems
    assert sorted((runs.root / "experiments").iterdir()) == before


@pytest.mark.claim("`--init-from` a SimCLR run (a subclass holding `self.encoder`, its own `train_step`) fills a "
                   "functional linear probe's encoder exactly, says what each block took in one line, run.json and "
                   "`diff`; a model sharing no block is refused in one line naming the blocks on each side; a "
                   "version without build configs (an earlier engine's) loads, built as its training built it",
                   note="(the probe's frozen encoder in its version equal to the SimCLR version's, max |diff| 0; "
                        "`loaded 4 of 6 weights ...: encoder 4/4; left as built: head 2/2`; without the training "
                        "data, one line naming `projector` and the pipeline's error)")
def test_a_functional_probe_takes_the_encoder_of_a_simclr_subclass(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    import experiments_manager as em
    from experiments_manager.export.build_configs import BUILD_CONFIGS_FILE
    from experiments_manager.runs.diff import diff_runs
    from experiments_manager.utils.errors import UserInputError

    shutil.copytree(EVERYDAY, tmp_path, dirs_exist_ok=True)
    write_pngs(tmp_path / "pngs")
    settings = tmp_path / "settings_simclr.py"
    simclr = train(tmp_path, settings, {"kind": "simclr"})
    with caplog.at_level("INFO", logger="experiments_manager"):
        with pytest.raises(UserInputError) as partial, pytest.MonkeyPatch.context() as patch:
            patch.chdir(tmp_path)
            em.train(str(settings), {"kind": "probe", "nbEpoch": 1}, init_from=str(simclr))
        assert str(partial.value).endswith("head/kernel: no block named 'head' in the source (1 more weight left "
                                           "out); to load only the weights that fit (a new head), add "
                                           "--skip-mismatch"), partial.value
        probe = train(tmp_path, settings, {"kind": "probe", "nbEpoch": 1}, init_from=str(simclr),
                      skip_mismatch=True)
    said = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Fine-tuning")]
    version = chosen_version_number(simclr)
    assert said == [f"Fine-tuning: loaded 4 of 6 weights of the new model from {simclr.resolve()} version {version} "
                    "(EMA): encoder 4/4; left as built: head 2/2; the optimizer starts fresh"], said
    record = json.loads((probe / "run.json").read_text())["fine_tuned_from"]
    assert {key: record[key] for key in ("weights_loaded", "weights", "blocks", "skipped")} == {
        "weights_loaded": 4, "weights": 6, "blocks": {"encoder": [4, 4], "head": [0, 2]},
        "skipped": ["head/kernel: no block named 'head' in the source",
                    "head/bias: no block named 'head' in the source"]}, record
    shown = diff_runs(simclr, probe).render()
    assert "+fine-tuned block encoder = 4/4" in shown and "+fine-tuned block head = 0/2" in shown, shown
    source, probed = em.load(simclr), em.load(probe)  # the probe's encoder is frozen: its version holds the source's
    assert source.projector.built and len(source.projector.weights) == 4  # built as training built it, then read
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        assert em.evaluate(simclr).metrics["loss"] > 0  # its own test_step's contrastive loss
    for theirs, ours in zip(source.encoder.weights, probed.get_layer("encoder").weights, strict=True):
        assert float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs)))) == 0.0

    with pytest.raises(UserInputError) as refused, pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        em.train(str(settings), {"kind": "unrelated", "nbEpoch": 1}, init_from=str(simclr), skip_mismatch=True)
    assert str(refused.value).endswith(
        "--init-from: expected blocks the new model shares with the version's by name (then their weights by order "
        "and shape), got none: the new model's blocks: stem, classifier; the version's: encoder, projector"), \
        refused.value
    assert sorted(path.name for path in (tmp_path / "experiments").iterdir()) == sorted(
        {simclr.name, probe.name}), "a refused run leaves no folder"

    # the version as an earlier engine wrote it (no build configs): the projector built as its training built it
    version = simclr / "exported_models" / str(chosen_version_number(simclr))
    (version / BUILD_CONFIGS_FILE).unlink()
    manifest = version / "checksums.sha256"
    manifest.write_text("".join(line for line in manifest.read_text().splitlines(keepends=True)
                                if BUILD_CONFIGS_FILE not in line))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)  # its training data, whose spec its step is traced on
        earlier = em.load(simclr)
    for theirs, ours in zip(source.projector.weights, earlier.projector.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    (tmp_path / "pngs").rename(tmp_path / "pngs_gone")
    with pytest.raises(UserInputError) as unbuilt, pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        em.load(simclr)
    said = str(unbuilt.value)
    assert ("em.load: projector: expected a block built as in the version (its 4 weights, the first of shape (16, 8)), "
            "got one the rebuilt model left unbuilt") in said, said
    assert ("building it as its training did failed: experiment_settings.py: get_input_pipeline: "
            "raw_data_dir_train") in said, said


def chosen_version_number(run: Path) -> int:
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.version_records import chosen_version

    return chosen_version(Experiment.open(run))[0]
