"""Which edge formats and quantizations exist, where each goes in a run folder, and whether the `[edge]` extra is
installed. This module imports neither TensorFlow nor a converter: `export --help` reads it.

A target is a (format, quantization) pair; its folder is `RUN/edge/<format>-<quantization>/`, holding the model file
(`model.tflite` or `model.onnx`), `signature.json`, `labels.txt` (the settings' `class_names`, when given) and the
parity report (`parity.md`, `parity.json`). `export --all` builds every target of `ALL_TARGETS`.

Example:

```python
target = check_target("litert", "int8")     # EdgeTarget(format='litert', quantize='int8')
target.folder_name, target.file_name         # ('litert-int8', 'model.tflite')
require_edge_extra()                         # UserInputError naming the pip command when a runtime is missing
```
"""

import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    import numpy as np

TensorInfo = dict[str, Any]  # a signature's tensor: name, dtype, shape (None: dynamic), quantization (if any)
Arrays = dict[str, "np.ndarray"]  # {input (or output) name: array}
Batch = tuple[Arrays, Optional["np.ndarray"]]  # a validation batch: (inputs, labels or None)

EDGE_FOLDER = "edge"  # RUN/edge/<format>-<quantization>/
FORMATS = ("litert", "onnx")
QUANTIZATIONS = ("none", "fp16", "int8", "int8-full")
# ONNX: fp16 needs onnxconverter-common (not in the extra); int8-full (integer inputs and outputs) is LiteRT's
SUPPORTED = {"litert": ("none", "fp16", "int8", "int8-full"), "onnx": ("none", "int8")}
ALIASES = {"tflite": "litert"}  # LiteRT is TFLite's new name: both are read (any case)
# why a format lacks a quantization, said with the refusal
UNSUPPORTED_WHY = {("onnx", "fp16"): "ONNX fp16 needs onnxconverter-common, which the [edge] extra lacks",
                   ("onnx", "int8-full"): "integer inputs and outputs are LiteRT's; ONNX int8 keeps float ones"}
SUFFIXES = {"litert": ".tflite", "onnx": ".onnx"}
SIGNATURE_FILE = "signature.json"
LABELS_FILE = "labels.txt"
PARITY_NAME = "parity"  # parity.md and parity.json, in each target's folder and (export --all) in RUN/edge/
EXTRA_MODULES = {"tf2onnx": "tf2onnx", "onnx": "onnx", "onnxruntime": "onnxruntime", "ai_edge_litert": "ai-edge-litert"}
RUNTIME_MODULES = {"litert": "ai_edge_litert", "onnx": "onnxruntime"}  # what runs each format (predict --edge)
PIP_COMMAND = "pip install 'experiments_manager[edge]'"
DEFAULT_CALIBRATION_BATCHES = 16  # int8: batches of the training pipeline calibrated on
DEFAULT_TIMING_SECONDS = 1.0  # the report: each latency and throughput measure's duration


@dataclasses.dataclass(frozen=True)
class EdgeTarget:
    """One edge export: a format and a quantization.

    Args:
        format: 'litert' or 'onnx'.
        quantize: 'none', 'fp16', 'int8' (weights and activations int8, float inputs and outputs) or 'int8-full'
            (integer-only kernels, int8 inputs and outputs).

    Example:

    ```python
    EdgeTarget("onnx", "int8").folder_name   # 'onnx-int8'
    ```
    """

    format: str
    quantize: str = "none"

    @property
    def folder_name(self) -> str:
        """'<format>-<quantize>': the target's folder under RUN/edge/."""
        return f"{self.format}-{self.quantize}"

    @property
    def file_name(self) -> str:
        """'model.tflite' or 'model.onnx'."""
        return f"model{SUFFIXES[self.format]}"

    @property
    def calibrated(self) -> bool:
        """True when the conversion needs calibration batches (int8, int8-full)."""
        return self.quantize.startswith("int8")


ALL_TARGETS = tuple(EdgeTarget(name, quantize) for name in FORMATS for quantize in SUPPORTED[name])


def check_target(format: str, quantize: str = "none") -> EdgeTarget:
    """The `EdgeTarget` of a `--format` and `--quantize`, or one line naming the flag, expected vs got.

    Args:
        format: the format asked for.
        quantize: the quantization asked for (default 'none').

    Raises:
        UserInputError: an unknown format or quantization, or one the format does not support.

    Example:

    ```python
    check_target("TFLite", "INT8")  # EdgeTarget(format='litert', quantize='int8')
    check_target("onnx", "fp16")    # UserInputError: --quantize: expected one of none, int8 for --format onnx, ...
    ```
    """
    name = ALIASES.get(format.lower(), format.lower())
    if name not in FORMATS:
        raise UserInputError(f"--format: expected one of {', '.join(FORMATS)} (or tflite), got {format!r}"
                             f"{_did_you_mean(format, [*FORMATS, *ALIASES])}")
    level = quantize.lower()
    if level not in SUPPORTED[name]:
        why = f" ({UNSUPPORTED_WHY[name, level]})" if (name, level) in UNSUPPORTED_WHY else ""
        close = "" if level in QUANTIZATIONS else _did_you_mean(quantize, SUPPORTED[name])
        raise UserInputError(f"--quantize: expected one of {', '.join(SUPPORTED[name])} for --format {name}, "
                             f"got {quantize!r}{why}{close}")
    return EdgeTarget(name, level)


def _did_you_mean(word: str, known: "list[str] | tuple[str, ...]") -> str:
    """'; did you mean X?' for the known word closest to `word`, or ''."""
    import difflib

    close = difflib.get_close_matches(word.lower(), known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def format_of_file(path: "str | Path") -> str:
    """The format of an exported file by its suffix ('litert' for .tflite, 'onnx' for .onnx).

    Args:
        path: the file (`predict --edge FILE`).

    Raises:
        UserInputError: no such file, or another suffix.

    Example:

    ```python
    format_of_file("RUN/edge/litert-int8/model.tflite")   # 'litert'
    ```
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"--edge: expected an exported model file (RUN/{EDGE_FOLDER}/<format>-<quantization>/"
                             f"model.tflite or model.onnx), got {str(path)!r}: no such file")
    for name, suffix in SUFFIXES.items():
        if path.suffix == suffix:
            return name
    raise UserInputError(f"--edge: expected a file ending in {' or '.join(SUFFIXES.values())}, got {path.name!r}")


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: an import blocked on purpose
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_edge_extra() -> None:
    """Raises one line naming the pip command when a converter or runtime of the `[edge]` extra is missing.

    Example:

    ```python
    require_edge_extra()   # error: the [edge] extra is missing (no module tf2onnx): pip install '...[edge]'
    ```
    """
    _require(EXTRA_MODULES, "edge export")


def require_runtime(path: "str | Path") -> str:
    """The format of the exported file `path` (`format_of_file`), once its runtime is known to be installed (only
    that one: `predict --edge` on a device needs no converter, nor the other runtime).

    Args:
        path: the model file.

    Raises:
        UserInputError: no such file, another suffix, or its runtime missing (one line naming the pip command).

    Example:

    ```python
    require_runtime("RUN/edge/litert-int8/model.tflite")   # 'litert', else: ... (missing: ai-edge-litert): pip ...
    ```
    """
    format = format_of_file(path)
    module = RUNTIME_MODULES[format]
    _require({module: EXTRA_MODULES[module]}, f"predict --edge {Path(path).name}")
    return format


def _require(modules: dict[str, str], what: str) -> None:
    missing = [package for module, package in modules.items() if not _installed(module)]
    if missing:
        raise UserInputError(f"{what} needs the [edge] extra (missing: {', '.join(missing)}): {PIP_COMMAND}")
