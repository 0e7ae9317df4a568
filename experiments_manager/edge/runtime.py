"""The exported models run locally, all behind one interface: `predict({input name: array}) -> {output name: array}`.

- `LiteRTModel`: a `.tflite` file in `ai_edge_litert`'s interpreter (not `tf.lite.Interpreter`, deprecated), through
  its `serving_default` signature's names; the batch dimension is resized per call (`resize_tensor_input`), and an
  int8-full model's int8 inputs and outputs are quantized and dequantized with the file's own scales.
- `OnnxModel`: a `.onnx` file in onnxruntime (CPU), its dynamic batch dimension kept by the converter.
- `SavedModelModel`: a version's SavedModel `serving_default` called in-process by TensorFlow: the reference.

Each says its input and output signature (`tensors()`: names, dtypes, shapes with None for a dynamic dimension), the
threads it runs on and its runtime's version. `open_model(path)` opens a file by its suffix.

Example:

```python
model = open_model("RUN/edge/litert-int8/model.tflite", threads=2)
model.predict({"image": images})        # {'output_0': array([[0.1, 0.8, 0.1], ...], dtype=float32)}
model.tensors()                         # {'inputs': [{'name': 'image', 'dtype': 'int8', ...}], 'outputs': [...]}
```
"""

import importlib.metadata
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np

from experiments_manager.edge.formats import Arrays, TensorInfo, format_of_file
from experiments_manager.utils.cpus import usable_cpus
from experiments_manager.utils.errors import UserInputError
from experiments_manager.utils.native_noise import NOISE, filtered_stderr

SIGNATURE = "serving_default"
_LITERT_NOISE = NOISE + (re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$"),)


def default_threads() -> int:
    """The threads an edge runtime gets unless told: every CPU this process may use (a Slurm job's, not its node's).

    Example:

    ```python
    LiteRTModel(path, threads=default_threads())
    ```
    """
    return usable_cpus()


def _tensor_info(name: str, dtype: "np.typing.DTypeLike", shape: list[Any], scale: Optional[float] = None,
                 zero_point: Optional[int] = None) -> TensorInfo:
    info: dict[str, object] = {"name": name, "dtype": np.dtype(dtype).name,
            "shape": [None if not isinstance(size, (int, np.integer)) or size < 0 else int(size) for size in shape]}
    if scale:
        info["quantization"] = {"scale": float(scale), "zero_point": int(zero_point or 0)}
    return info


class EdgeModel:
    """What every runtime offers (see the module's docstring); not built directly.

    Attributes:
        path: the model's file or folder; `format`: 'litert', 'onnx' or 'savedmodel'; `threads`: threads used.

    Example:

    ```python
    outputs = model.predict({"input": np.zeros((4, 1), np.float32)})
    ```
    """

    format = ""
    path = Path()
    threads = 1

    def predict(self, inputs: Arrays) -> Arrays:
        """{output name: float array} for {input name: array} (float inputs; an int8 model's are quantized).

        Args:
            inputs: every input of the signature by name, any batch size.

        Example:

        ```python
        model.predict({"image": np.zeros((2, 16, 16, 1), np.float32)})["output_0"].shape   # (2, 3)
        ```
        """
        raise NotImplementedError

    def tensors(self) -> dict[str, list[TensorInfo]]:
        """{'inputs': [...], 'outputs': [...]}: each tensor's name, dtype, shape (None: dynamic) and quantization.

        Example:

        ```python
        model.tensors()["inputs"]   # [{'name': 'input', 'dtype': 'float32', 'shape': [None, 1]}]
        ```
        """
        raise NotImplementedError

    @property
    def runtime(self) -> str:
        """The runtime and its version, e.g. 'ai-edge-litert 2.3.0'."""
        raise NotImplementedError

    @property
    def dynamic_batch(self) -> bool:
        """True when every input's first dimension is dynamic."""
        return all(tensor["shape"][:1] == [None] for tensor in self.tensors()["inputs"])

    def check_inputs(self, inputs: Arrays) -> None:
        """Raises one line when `inputs` lacks an input or names one the model does not have.

        Args:
            inputs: {input name: array}.

        Example:

        ```python
        model.check_inputs({"x": x})   # UserInputError: model.tflite: inputs: expected input, got x
        ```
        """
        expected = self.__dict__.get("_input_names")
        if expected is None:  # read once: a call's checks stay cheap beside a model that runs in microseconds
            expected = self.__dict__["_input_names"] = frozenset(tensor["name"] for tensor in self.tensors()["inputs"])
        if inputs.keys() != expected:
            raise UserInputError(f"{self.path}: inputs: expected {', '.join(sorted(expected))}, got "
                                 f"{', '.join(sorted(map(str, inputs))) or 'none'}")


class LiteRTModel(EdgeModel):
    """A `.tflite` file in the LiteRT interpreter (`ai_edge_litert`), through its `serving_default` signature.

    Args:
        path: the file.
        threads: the interpreter's threads (default None: `default_threads()`).

    Example:

    ```python
    LiteRTModel("RUN/edge/litert-fp16/model.tflite").predict({"input": x})
    ```
    """

    format = "litert"

    def __init__(self, path: "str | Path", threads: Optional[int] = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.threads = threads or default_threads()
        try:
            with filtered_stderr(_LITERT_NOISE):  # its INFO line on the delegate it applies, at every start
                self._interpreter = Interpreter(model_path=str(self.path), num_threads=self.threads)
                self._interpreter.allocate_tensors()
            runner = self._interpreter.get_signature_runner(SIGNATURE)
        except (RuntimeError, ValueError) as error:
            raise UserInputError(f"{self.path}: LiteRT cannot run it: {str(error).splitlines()[0]}") from None
        self._inputs = runner.get_input_details()
        self._outputs = runner.get_output_details()
        self._shapes = {name: tuple(detail["shape"]) for name, detail in self._inputs.items()}
        # (name, tensor index, dtype, scale, zero point) of each integer tensor's quantization, else scale None
        self._feeds = [self._plan(name, detail) for name, detail in self._inputs.items()]
        self._fetches = [self._plan(name, detail) for name, detail in self._outputs.items()]

    @staticmethod
    def _plan(name: str, detail: dict[str, Any]) -> tuple[str, int, Any, Optional[float], int]:
        scale, zero_point = detail["quantization"]
        quantized = bool(scale) and np.issubdtype(detail["dtype"], np.integer)
        return name, detail["index"], detail["dtype"], scale if quantized else None, zero_point

    def tensors(self) -> dict[str, list[TensorInfo]]:
        def infos(details: dict[str, Any]) -> list[TensorInfo]:
            return [_tensor_info(name, detail["dtype"], detail["shape_signature"], *detail["quantization"])
                    for name, detail in details.items()]

        return {"inputs": infos(self._inputs), "outputs": infos(self._outputs)}

    @property
    def runtime(self) -> str:
        return f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}"

    def predict(self, inputs: Arrays) -> Arrays:
        self.check_inputs(inputs)
        interpreter, resized = self._interpreter, False
        values = []
        for name, index, dtype, scale, zero_point in self._feeds:
            value = np.asarray(inputs[name])
            if scale is not None:
                limits = np.iinfo(dtype)
                value = np.clip(np.round(value / scale + zero_point), limits.min, limits.max)
            values.append((index, value.astype(dtype, copy=False)))
            if self._shapes[name] != value.shape:  # the batch dimension, dynamic in the file
                interpreter.resize_tensor_input(index, list(value.shape))
                self._shapes[name], resized = value.shape, True
        if resized:
            interpreter.allocate_tensors()
        for index, value in values:
            interpreter.set_tensor(index, value)
        interpreter.invoke()
        outputs = {}
        for name, index, _, scale, zero_point in self._fetches:
            value = interpreter.get_tensor(index)
            outputs[name] = value if scale is None else (value.astype(np.float32) - zero_point) * np.float32(scale)
        return outputs


class OnnxModel(EdgeModel):
    """A `.onnx` file in onnxruntime on the CPU.

    Args:
        path: the file.
        threads: intra-op threads (default None: `default_threads()`); inter-op: 1.

    Example:

    ```python
    OnnxModel("RUN/edge/onnx-none/model.onnx").predict({"input": x})
    ```
    """

    format = "onnx"
    _DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64",
               "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(bool)": "bool",
               "tensor(float16)": "float16", "tensor(string)": "object"}

    def __init__(self, path: "str | Path", threads: Optional[int] = None) -> None:
        import onnxruntime

        self.path = Path(path)
        self.threads = threads or default_threads()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own exception types: a damaged or foreign file
            raise UserInputError(f"{self.path}: onnxruntime cannot run it: {str(error).splitlines()[0]}") from None
        self._names = [output.name for output in self._session.get_outputs()]
        self._dtypes = {node.name: self._DTYPES.get(node.type, "float32") for node in self._session.get_inputs()}

    def tensors(self) -> dict[str, list[TensorInfo]]:
        def infos(nodes: list[Any]) -> list[TensorInfo]:
            return [_tensor_info(node.name, self._DTYPES.get(node.type, "float32"), node.shape) for node in nodes]

        return {"inputs": infos(self._session.get_inputs()), "outputs": infos(self._session.get_outputs())}

    @property
    def runtime(self) -> str:
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"

    def predict(self, inputs: Arrays) -> Arrays:
        self.check_inputs(inputs)
        feeds = {name: np.asarray(value).astype(self._dtypes[name], copy=False) for name, value in inputs.items()}
        return dict(zip(self._names, self._session.run(self._names, feeds)))


class SavedModelModel(EdgeModel):
    """A version's SavedModel, its `serving_default` signature called in-process by TensorFlow (the reference).

    Args:
        path: the version's folder (`RUN/exported_models/<N>`).

    Example:

    ```python
    SavedModelModel(experiment.export_dir / "3").predict({"input": x})
    ```
    """

    format = "savedmodel"

    def __init__(self, path: "str | Path") -> None:
        import tensorflow as tf

        self.path = Path(path)
        self._loaded = tf.saved_model.load(str(self.path))
        self._function = self._loaded.signatures[SIGNATURE]
        self._specs = self._function.structured_input_signature[1]
        order = [getattr(spec, "name", None) for spec in  # the served function's (Keras `inputs`) order, else by name
                 getattr(getattr(self._loaded, "served_model", None), "input_signature", None) or ()]
        self._order = order if sorted(map(str, order)) == sorted(self._specs) else sorted(self._specs)
        self.threads = tf.config.threading.get_intra_op_parallelism_threads() or default_threads()

    def tensors(self) -> dict[str, list[TensorInfo]]:
        import tensorflow as tf

        def infos(specs: dict[str, Any], order: list[Any]) -> list[TensorInfo]:
            return [_tensor_info(name, specs[name].dtype.as_numpy_dtype, specs[name].shape.as_list()) for name in order]

        outputs = tf.nest.map_structure(lambda tensor: tensor, self._function.structured_outputs)
        return {"inputs": infos(self._specs, self._order), "outputs": infos(outputs, sorted(outputs))}

    @property
    def runtime(self) -> str:
        import tensorflow as tf

        return f"tensorflow {tf.__version__}"

    def predict(self, inputs: Arrays) -> Arrays:
        import tensorflow as tf

        self.check_inputs(inputs)
        outputs = self._function(**{name: tf.constant(value, dtype=self._specs[name].dtype) for name, value in
                                    inputs.items()})
        return {name: value.numpy() for name, value in outputs.items()}


def open_model(path: "str | Path", threads: Optional[int] = None) -> EdgeModel:
    """The exported file `path` in its runtime, chosen by its suffix (.tflite: LiteRT, .onnx: onnxruntime).

    Args:
        path: the model file.
        threads: the runtime's threads (default None: `default_threads()`).

    Raises:
        UserInputError: no such file, another suffix, or a file the runtime cannot run.

    Example:

    ```python
    open_model("RUN/edge/onnx-none/model.onnx").predict({"input": x})
    ```
    """
    runtimes = {"litert": LiteRTModel, "onnx": OnnxModel}
    return runtimes[format_of_file(path)](path, threads)


def flex_ops(path: "str | Path") -> list[str]:
    """The Flex (SELECT_TF_OPS) ops a `.tflite` file holds, by TensorFlow name ([] for none, and for ONNX).

    Args:
        path: the model file.

    Example:

    ```python
    flex_ops("model.tflite")   # ['MatrixDeterminant']
    ```
    """
    path = Path(path)
    if path.suffix != ".tflite":
        return []
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    codes = (model.OperatorCodes(index).CustomCode() for index in range(model.OperatorCodesLength()))
    return sorted({code.decode()[len("Flex"):] for code in codes if code and code.startswith(b"Flex")})
