"""A lab's own setups, as a new user runs them through the CLI: a GAN with its own `train_step` and two optimizers on
data of points only (examples/gan), and a model whose custom layer lives in a helper module edited after training.
Train -> evaluate while it trains -> kill -9 -> resume -> em.load against the SavedModel -> a real server; an
edited helper refused by evaluate, em.load and export in one line, compared by diff."""

import json
import os
import signal

import numpy as np
import pytest
import requests

from conftest import read_run, settings_variant, single_experiment, wait_for

GAN_SETTINGS = "examples/gan/mysettings_gan.py"
STEPS = 128  # training batches an epoch: 8192 points of 64


def _served(version_folder, **inputs):
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_folder)).signatures["serving_default"]
    return {name: value.numpy() for name, value in signature(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def _d_optimizer_iterations(run):
    """The GAN's second optimizer's iteration count in the run's newest checkpoint (Keras' weights file)."""
    import h5py

    newest = max((run / "checkpoints").glob("ckpt-*"), key=lambda path: int(path.name.split("-")[1]))
    with h5py.File(newest / "model.weights.h5", "r") as weights:
        return int(np.asarray(weights["d_optimizer/vars/0"]))


@pytest.mark.slow
@pytest.mark.claim("Own training loops as Keras allows them: a GAN's own `train_step` with a second optimizer on "
                   "batches of x only trains, is evaluated while it trains, resumes after kill -9 with both "
                   "optimizers' state, and loads and serves as its SavedModel answers",
                   note="(examples/gan through the CLI: evaluate's exit 0 while the trainer still holds the run; "
                        "the d_optimizer's iterations in the last checkpoint = every step of every epoch, not a "
                        "restart; em.load's generator = the SavedModel's = a real server's REST answer, 1e-6)")
def test_a_gan_trains_is_evaluated_while_training_resumes_after_kill_and_serves(workdir, start_cli, run_cli,
                                                                                 model_server):
    from experiments_manager.serving.config import ModelSource

    import experiments_manager as em

    settings = settings_variant(workdir, "mysettings_gan_lab.py", [
        "nb_train_samples = 8192", "early_stopping_patience = 1000"], base=GAN_SETTINGS)
    training = start_cli("train", "-u", str(settings), "--hparam", "nbEpoch=200", own_group=True)
    run = wait_for(lambda: next((path.parent for path in (workdir / "experiments/examples/gan").glob("*/run.json")),
                                None), 120, "the run's folder")
    wait_for(lambda: (run / "run.json").is_file() and read_run(run).get("epochs_completed", 0) >= 2
             and read_run(run).get("exported_versions"), 180, "two epochs and a version")

    evaluated = run_cli("evaluate", str(run), "--data", "generated")  # the test data: the pipeline's generated points
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert training.poll() is None and read_run(run)["status"] == "running", "the run ended before it was evaluated"
    assert "d_loss" in evaluated.stdout and "g_loss" in evaluated.stdout
    evaluation = json.loads(next((run / "evaluations").glob("*/evaluation.json")).read_text())
    assert set(evaluation["metrics"]) == {"d_loss", "g_loss"} and evaluation["samples"] == 256

    os.killpg(training.pid, signal.SIGKILL)
    training.wait()
    done = json.loads(next(iter(sorted((run / "checkpoints").glob("ckpt-*/state.json"))[-1:])).read_text())
    epochs = done["epochs_completed"]
    resumed = run_cli("train", "--resume", str(run), "--epochs", str(epochs + 1))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert read_run(run)["status"] == "finished" and read_run(run)["epochs_completed"] == epochs + 1
    assert _d_optimizer_iterations(run) == STEPS * (epochs + 1)  # a restarted optimizer would count one epoch

    loaded = em.load(run, version=max(read_run(run)["exported_versions"]))
    noise = np.random.default_rng(3).normal(size=(16, 4)).astype("float32")
    version = loaded.version_info["version"]
    served = _served(run / "exported_models" / str(version), noise=noise)["points"]
    np.testing.assert_allclose(loaded.generator(noise).numpy(), served, rtol=1e-6, atol=1e-6)
    server = model_server([ModelSource("model_gan", run / "exported_models", policy="specific", versions=(version,))])
    url = f"{server.rest_url}/v1/models/model_gan/versions/{version}:predict"
    answer = requests.post(url, json={"instances": noise.tolist()}, timeout=10).json()["predictions"]
    np.testing.assert_allclose(answer, served, rtol=1e-6, atol=1e-6)


HELPER = '''import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="lab")
class Scaled(keras.layers.Layer):
    def __init__(self, scale=SCALE, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, inputs):
        return inputs * self.scale

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}
'''

MODEL_WITH_HELPER = '''from tensorflow import keras

from lab_helpers import Scaled


def model(usersettings):
    inputs = keras.Input((1,), name="point")
    hidden = keras.layers.Dense(usersettings.hparams["hiddenNeurons"], activation="relu")(inputs)
    return keras.Model(inputs, Scaled()(keras.layers.Dense(1)(hidden)))
'''


@pytest.mark.slow
@pytest.mark.claim("A run's code is the run's: a helper module the model file imports, edited after training, is "
                   "refused by evaluate, em.load and export in one line naming it (--accept-code-change accepts it); "
                   "diff shows the module changed between two runs",
                   note="(a registered custom layer in a helper beside the model file; the helper's scale edited "
                        "2.0 -> 3.0: each refusal names the helper, exit 2, nothing written; accepted, evaluate "
                        "runs with the warning line)")
def test_a_helper_module_edited_after_training_is_refused_by_name(workdir, run_cli):
    import experiments_manager as em
    from experiments_manager.utils.errors import UserInputError

    helper = workdir / "examples/regression/lab_helpers.py"
    helper.write_text(HELPER.replace("SCALE", "2.0"))
    (workdir / "examples/regression/model_with_helper.py").write_text(MODEL_WITH_HELPER)
    settings = settings_variant(workdir, "settings_helper.py", [
        "model_file = 'examples/regression/model_with_helper.py'", "raw_data_dir_test = 'test'"])
    trained = run_cli("train", "-u", str(settings), "--hparam", "nbEpoch=2")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    run = single_experiment(workdir / "experiments/examples/curve_fitting")
    assert str(helper.resolve()) in read_run(run)["attempts"][-1]["code"]

    (kept,) = (run / "code").glob("*-lab_helpers.py")  # the run's copy of the helper it imported
    assert kept.read_text() == helper.read_text()
    helper.write_text(HELPER.replace("SCALE", "3.0"))
    changed = f"{run.resolve()}: the code changed since the run trained: {helper.resolve()} (changed); "
    for command in (["evaluate", str(run)], ["export", str(run), "--format", "onnx"]):
        refused = run_cli(*command)
        assert refused.returncode == 2 and refused.stderr.strip().startswith(f"error: {changed}"), refused.stderr
        copy_named = f"put it back (the run's copy: {run.resolve() / 'code' / kept.name}), or accept it with "
        assert f"{copy_named}--accept-code-change" in refused.stderr, refused.stderr
    assert not (run / "evaluations").exists() and not (run / "edge").exists()
    with pytest.raises(UserInputError, match="accept it with em.load\\(..., accept_code_change=True\\)"):
        em.load(run)
    accepted = run_cli("evaluate", str(run), "--accept-code-change")
    assert accepted.returncode == 0, accepted.stderr
    assert "evaluate with changed code (accepted): " in accepted.stderr + accepted.stdout

    again = run_cli("train", "-u", str(settings), "--hparam", "nbEpoch=1")
    assert again.returncode == 0, again.stderr
    (second,) = [path for path in (workdir / "experiments/examples/curve_fitting").iterdir() if path != run
                 and (path / "run.json").is_file()]
    compared = run_cli("diff", str(run), str(second)).stdout.splitlines()
    assert "modules they import:" in compared
    assert any(line.startswith("-lab_helpers.py: sha256 ") for line in compared)
    assert any(line.startswith("+lab_helpers.py: sha256 ") for line in compared)
