"""experiments_manager/utils/deferred_imports.py: a process that imports us first starts TensorFlow without running
scikit-learn or matplotlib.pyplot, reads a settings file's `from hyperopt import hp` without running hyperopt's ATPE
(scipy.stats) or networkx, and all of them work as before when used."""

import subprocess
import sys

import pytest

SCRIPT = """
import sys
import experiments_manager
import tensorflow as tf
from hyperopt import hp  # what the seeds' settings files do, for their hyperopt_space

space = {"a": hp.loguniform("a", -7, -2), "b": hp.choice("b", [1, 2])}
DEFERRED = ("sklearn", "matplotlib.figure", "scipy.stats", "networkx.classes")
loaded = sorted(name for name in DEFERRED if name in sys.modules)
assert not loaded, f"run at start-up: {loaded}"

# what every training process does next: autograph converts a function (it reads each module's __file__), and a
# module imports pyplot again (the import system reads its __spec__); neither runs them
import matplotlib.pyplot


@tf.function
def double(x):
    return x * 2


assert double(tf.constant(1.0)).numpy() == 2.0
loaded = sorted(name for name in DEFERRED if name in sys.modules)
assert not loaded, f"run by autograph or a second import: {loaded}"

import numpy as np
from hyperopt import Trials, atpe, fmin, tpe

best = fmin(lambda point: point["a"], space, algo=tpe.suggest, max_evals=3, trials=Trials(),
            rstate=np.random.default_rng(1), show_progressbar=False)  # samples through networkx's graphs
assert set(best) == {"a", "b"}, best
assert callable(atpe.suggest) and "scipy.stats" in sys.modules

import keras
import sklearn.base
assert issubclass(keras.wrappers.SKLearnClassifier, sklearn.base.BaseEstimator)  # the real wrapper, not the stub
assert tf.keras.wrappers.SKLearnRegressor is keras.wrappers.SKLearnRegressor

import io
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
figure = plt.figure()
plt.plot([1, 2, 3])
png = io.BytesIO()
figure.savefig(png, format="png")
assert png.getvalue().startswith(b"\\x89PNG"), png.getvalue()[:8]
print("ok")
"""


@pytest.mark.slow
@pytest.mark.claim("a command starts TensorFlow without running scikit-learn or matplotlib.pyplot, which Keras "
                   "imports for optional features, nor hyperopt's ATPE and networkx, which a settings file's "
                   "`from hyperopt import hp` imports; all work as before when used")
def test_keras_optional_imports_run_when_first_used(tmp_path):
    script = tmp_path / "script.py"  # a file: autograph converts only functions whose source it can read
    script.write_text(SCRIPT)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


THREADS_SCRIPT = """
import sys
import threading

import experiments_manager.utils.deferred_imports as deferred

deferred.DEFERRED = deferred.DEFERRED | {"slow_module"}
deferred.defer_optional_imports()
sys.path.insert(0, sys.argv[1])
import slow_module

start, seen = threading.Barrier(4), []


def read():
    start.wait()
    try:
        seen.append(slow_module.VALUE)
    except AttributeError as error:
        seen.append(repr(error))


threads = [threading.Thread(target=read) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(seen)
"""


def test_threads_reading_a_deferred_module_at_once_all_see_it_whole(tmp_path):
    """The first reader runs the module; the others wait for it instead of reading a half-run module (a sweep's
    worker threads sample their spaces, which reads networkx)."""
    (tmp_path / "slow_module.py").write_text("import time\ntime.sleep(0.5)\nVALUE = 42\n")
    script = tmp_path / "script.py"
    script.write_text(THREADS_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[42, 42, 42, 42]", (result.stdout, result.stderr)
