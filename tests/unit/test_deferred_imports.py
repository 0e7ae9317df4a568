"""experiments_manager/utils/deferred_imports.py: a process that imports us first starts TensorFlow without running
scikit-learn or matplotlib.pyplot, and both work as before when used."""

import subprocess
import sys

import pytest

SCRIPT = """
import sys
import experiments_manager
import tensorflow as tf
loaded = sorted(name for name in ("sklearn", "matplotlib.figure") if name in sys.modules)
assert not loaded, f"run at start-up: {loaded}"

# what every training process does next: autograph converts a function (it reads each module's __file__), and a
# module imports pyplot again (the import system reads its __spec__); neither runs them
import matplotlib.pyplot


@tf.function
def double(x):
    return x * 2


assert double(tf.constant(1.0)).numpy() == 2.0
loaded = sorted(name for name in ("sklearn", "matplotlib.figure") if name in sys.modules)
assert not loaded, f"run by autograph or a second import: {loaded}"

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


@pytest.mark.claim("a command starts TensorFlow without running scikit-learn or matplotlib.pyplot, which Keras "
                   "imports for optional features; both work as before when a settings file uses them")
def test_keras_optional_imports_run_when_first_used(tmp_path):
    script = tmp_path / "script.py"  # a file: autograph converts only functions whose source it can read
    script.write_text(SCRIPT)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
