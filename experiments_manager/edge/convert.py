"""A version's SavedModel `serving_default` signature (EMA weights already in) converted to LiteRT or ONNX.

- LiteRT: TensorFlow's converter on the signature's concrete function (`from_concrete_functions`, which freezes the
  variables; `from_saved_model` kept them as READ_VARIABLE ops that calibration cannot run). fp16: float16 weights;
  int8: int8 weights and activations calibrated on the batches given, float inputs and outputs; int8-full: integer-only
  kernels (`TFLITE_BUILTINS_INT8`), int8 inputs and outputs. Builtin ops only: an op that needs TensorFlow's kernels
  (Flex, `SELECT_TF_OPS`, which a Coral or the plain runtime cannot run) is refused in one line naming the ops,
  unless `allow_flex`.
- ONNX: tf2onnx's saved-model path (`tf_loader.from_saved_model` + `from_graph_def`, in this process; its
  `from_keras` is broken on Keras 3), opset `OPSET`; input and output names and the dynamic batch dimension kept.
  int8: onnxruntime's static quantization (QDQ, int8) calibrated on the same batches.

The converters' native diagnostics are kept off the terminal; a failure is one line.

Example:

```python
converter = convert_version(version_dir, EdgeTarget("litert", "int8"), tmp / "model.tflite", calibration=batches)
converter    # 'tensorflow 2.21.0'
```
"""

import contextlib
import logging
import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, cast

from experiments_manager.edge.formats import Arrays, EdgeTarget
from experiments_manager.edge.runtime import SIGNATURE
from experiments_manager.utils.errors import UserInputError
from experiments_manager.utils.native_noise import filtered_stderr

OPSET = 17
_EVERY_LINE = (re.compile(""),)  # the converters' MLIR diagnostics: their gist is in the exception we re-raise
_SELECT_OPS = re.compile(r"TF Select ops: ([^\n]+)")
_CUSTOM_OPS = re.compile(r"Custom ops: ([^\n]+)")


def convert_version(saved_model_dir: "str | Path", target: EdgeTarget, output: "str | Path",
                    calibration: Optional[Iterable[Arrays]] = None, allow_flex: bool = False, origin: str = "") -> str:
    """Writes the `target` conversion of the SavedModel at `saved_model_dir` to `output`; returns the converter's
    name and version.

    Args:
        saved_model_dir: the version's folder (`RUN/exported_models/<N>`).
        target: the format and quantization.
        output: the model file to write.
        calibration: for int8, the batches to calibrate on, each {input name: float array} (default None).
        allow_flex: LiteRT: let ops that need TensorFlow's kernels in as Flex ops (default False: refused).
        origin: the layers a refusal of Flex ops names as theirs (default '': none named).

    Raises:
        UserInputError: Flex ops not allowed, ops no runtime has, int8 without calibration batches.

    Example:

    ```python
    convert_version("RUN/exported_models/3", EdgeTarget("onnx"), "model.onnx")   # 'tf2onnx 1.17.0, opset 17'
    ```
    """
    calibration = list(calibration or [])
    if target.calibrated and not calibration:
        raise UserInputError(f"--quantize {target.quantize}: expected calibration batches from the training "
                             "pipeline, got none")
    convert = _litert if target.format == "litert" else _onnx
    with _quiet():
        return convert(Path(saved_model_dir), target, Path(output), calibration, allow_flex, origin)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Native diagnostics, Python warnings (the calibrator's tf.lite.Interpreter deprecation) and the converters'
    log lines kept off the terminal for the block."""
    loggers = [logging.getLogger(name) for name in ("tensorflow", "tf2onnx")]
    levels = [logger.level for logger in loggers]
    with filtered_stderr(_EVERY_LINE), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _litert(folder: Path, target: EdgeTarget, output: Path, calibration: list[Arrays], allow_flex: bool,
            origin: str) -> str:
    import tensorflow as tf
    from tensorflow.lite.python.convert_phase import ConverterError

    loaded = tf.saved_model.load(str(folder))
    function = loaded.signatures[SIGNATURE]
    builtins = tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if target.quantize == "int8-full" else tf.lite.OpsSet.TFLITE_BUILTINS

    def converted(ops: list[Any]) -> bytes:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], loaded)
        converter.target_spec.supported_ops = ops
        if target.quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if target.quantize == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        if target.calibrated:
            converter.representative_dataset = lambda: iter(calibration)
        if target.quantize == "int8-full":
            converter.inference_input_type = converter.inference_output_type = tf.int8
        return cast(bytes, converter.convert())

    try:
        data = converted([builtins])
    except ConverterError as error:
        text = str(error)
        select = _names(_SELECT_OPS, text)
        custom = _names(_CUSTOM_OPS, text)
        where = f"{folder} ({SIGNATURE})"
        if custom:
            raise UserInputError(f"{where}: ops {', '.join(custom)}: expected ops LiteRT has (builtin or Flex), got "
                                 "ops neither has: export --format onnx instead") from None
        if not select:
            raise UserInputError(f"{where}: the LiteRT converter failed: {_gist(text)}") from None
        if not allow_flex:
            of = f" of {origin}" if origin else ""
            raise UserInputError(f"{where}: Flex ops {', '.join(select)}{of}: expected LiteRT builtin ops only (Flex "
                                 "ops need TensorFlow's kernels, which a Coral or the plain runtime lacks), got "
                                 "these: change the served function, or --allow-flex-ops to export them "
                                 "anyway") from None
        data = converted([builtins, tf.lite.OpsSet.SELECT_TF_OPS])
    output.write_bytes(data)
    return f"tensorflow {tf.__version__}"


def _names(pattern: "re.Pattern[str]", text: str) -> list[str]:
    found = pattern.search(text)
    return sorted({name.strip() for name in found.group(1).split(",") if name.strip()}) if found else []


def _gist(text: str) -> str:
    """The converter's first line that says something (its message opens with MLIR locations)."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("loc(")]
    return lines[0][:300] if lines else "no message"


def _onnx(folder: Path, target: EdgeTarget, output: Path, calibration: list[Arrays], allow_flex: bool,
          origin: str) -> str:
    import tf2onnx
    from tf2onnx import tf_loader

    try:
        graph_def, inputs, outputs, renamed = tf_loader.from_saved_model(
            str(folder), None, None, tag="serve", signatures=[SIGNATURE], return_tensors_to_rename=True)
        float_file = output.with_name(f"float-{output.name}") if target.calibrated else output
        tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs, opset=OPSET,
                                       tensors_to_rename=renamed, output_path=str(float_file))
    except Exception as error:  # tf2onnx raises plain exceptions for ops it cannot map
        raise UserInputError(f"{folder} ({SIGNATURE}): tf2onnx failed: {type(error).__name__}: "
                             f"{_gist(str(error))}") from None
    converter = f"tf2onnx {tf2onnx.__version__}, opset {OPSET}"
    if target.calibrated:
        try:
            _quantized_onnx(float_file, output, calibration)
        except Exception as error:  # onnxruntime's quantizer raises plain and native exceptions alike
            raise UserInputError(f"{folder} ({SIGNATURE}): onnxruntime's int8 quantization failed: "
                                 f"{type(error).__name__}: {_gist(str(error))}") from None
        finally:
            float_file.unlink(missing_ok=True)
        converter += ", onnxruntime.quantization (QDQ int8)"
    return converter


def _quantized_onnx(float_file: Path, output: Path, calibration: list[Arrays]) -> None:
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration)

        def get_next(self) -> Optional[Arrays]:
            batch = next(self.batches, None)
            return None if batch is None else {name: np.asarray(value) for name, value in batch.items()}

    quantize_static(str(float_file), str(output), Batches(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
