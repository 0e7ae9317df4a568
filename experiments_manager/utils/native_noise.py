"""TensorFlow's native start-up lines that are not the user's business, kept off stderr while TensorFlow imports and
finds its devices. Every other line passes through unchanged: a real error is still seen.

TensorFlow's C++ code writes these lines straight to file descriptor 2 (absl logs before `absl::InitializeLog()`
ignore `TF_CPP_MIN_LOG_LEVEL`), so they are filtered there, through a pipe, for the start-up window only.

Example:

```python
from experiments_manager.utils.native_noise import import_tensorflow_quietly

tf = import_tensorflow_quietly()   # no "failed call to cuInit" on a machine without a GPU
```
"""

import contextlib
import os
import re
import sys
import threading
from types import ModuleType
from typing import Iterator, Pattern, Sequence

NOISE = tuple(re.compile(pattern) for pattern in (
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used",
    # no driver (303) or no device (CUDA_VISIBLE_DEVICES="" on a GPU node): CPU training, as the user asked.
    # Any other cuInit failure (a driver / library mismatch) is a real error and passes.
    r"failed call to cuInit: .*(\(303\)|CUDA_ERROR_NO_DEVICE|no CUDA-capable device)",
    r"Unable to register cu(DNN|FFT|BLAS) factory: Attempting to register factory for plugin",
    r"computation placer already registered",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags",
    r"oneDNN custom operations are on",
))
_DRAIN_SECONDS = 5.0  # a child started inside the window may hold the pipe: stop waiting for it then


def is_noise(line: str, noise: Sequence[Pattern[str]] = NOISE) -> bool:
    """True when `line` (str, without its newline) is start-up noise."""
    return any(pattern.search(line) for pattern in noise)


@contextlib.contextmanager
def filtered_stderr(noise: Sequence[Pattern[str]] = NOISE) -> Iterator[None]:
    """File descriptor 2 goes through a pipe while the block runs; lines matching `noise` are dropped.

    Args:
        noise: compiled patterns (`re.search`) of the lines to drop (default: `NOISE`).

    Without a file descriptor 2 (a closed stderr) the block runs unfiltered.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    forwarder = threading.Thread(target=_forward, args=(read_end, saved, noise), name="native-noise-filter",
                                 daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last write end closes: the forwarder reads to its end
        forwarder.join(_DRAIN_SECONDS)
        os.close(saved)


def _forward(read_end: int, destination: int, noise: Sequence[Pattern[str]]) -> None:
    pending = b""
    with open(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            _write(destination, [line for line in lines if not is_noise(line.decode(errors="replace"), noise)])
    if pending and not is_noise(pending.decode(errors="replace"), noise):
        os.write(destination, pending)


def _write(destination: int, lines: list[bytes]) -> None:
    if lines:
        os.write(destination, b"".join(line + b"\n" for line in lines))


def import_tensorflow_quietly() -> ModuleType:
    """Imports TensorFlow and lets it probe for GPUs with the start-up noise filtered; returns the module.

    The probe (`tf.config.list_physical_devices`) fixes nothing: devices can still be chosen afterwards.
    """
    with filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()
    module: ModuleType = tf
    return module
