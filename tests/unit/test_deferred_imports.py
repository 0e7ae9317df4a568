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
def test_keras_optional_imports_run_when_first_used():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
