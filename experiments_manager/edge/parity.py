"""The parity report of edge exports: each exported model against its SavedModel, on the validation pipeline.

One `ParityRow` per model (the SavedModel itself first, as the reference): format, quantization, file size, max and
mean |diff| of every output against the SavedModel's (and the max |diff| relative to the largest |reference|), the
settings' compiled loss and metrics on the validation data (`get_total_loss`, `get_metrics`, computed by Keras on
the model's outputs: the signature's only output, else its first by name; the loss without the model's
regularization terms), top-1 agreement with the SavedModel for a classifier (`classification_report.class_ids`,
evaluate's rule), batch-1 latency p50 / p99 and throughput at the training batch size on this machine, threads, Flex
ops, dynamic batch, converter and runtime versions, and the version exported. `ParityRow` is the one definition of a
row: the json files hold its fields, `markdown` draws the table.

Example:

```python
row = measure(model, reference, batches, scorer, version=3, converter="tensorflow 2.21.0", file="...", size_bytes=9000,
              batch_size=50)
print(markdown([reference_row, row]))
write_report(folder, [reference_row, row])    # parity.md + parity.json
```
"""

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

import numpy as np

from experiments_manager.edge.formats import DEFAULT_TIMING_SECONDS, PARITY_NAME
from experiments_manager.run.classification_report import class_ids
from experiments_manager.utils.atomic import write_text_atomically
from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.edge.formats import Arrays, Batch
    from experiments_manager.edge.runtime import EdgeModel
    from experiments_manager.settings.loader import Settings



@dataclasses.dataclass
class ParityRow:
    """One model of a parity report (a row of parity.md, an object of parity.json).

    Args:
        format: 'savedmodel' (the reference), 'litert' or 'onnx'; quantize: 'none', 'fp16', 'int8', 'int8-full'.
        file: the model file, relative to the run folder; size_bytes: its size (a SavedModel: its folder's).
        version: the run's version exported; samples: validation samples compared.
        max_abs_diff, mean_abs_diff: |output - SavedModel output| over every output; max_rel_diff: max |diff| /
            max |SavedModel output|.
        metrics: the settings' compiled loss and metrics on the validation data.
        top1_agreement: a classifier's share of samples whose top class is the SavedModel's, else None.
        latency_p50_ms, latency_p99_ms: one sample per call; throughput: samples/s at `batch_size` per call.
        threads: the runtime's threads; flex_ops: Flex ops in the file; dynamic_batch: the batch dimension is dynamic.
        converter, runtime: their names and versions.
        note: why the measures are None ('' when measured): a file with Flex ops that this LiteRT cannot run.

    Example:

    ```python
    ParityRow.from_json(json.loads(Path("parity.json").read_text())["rows"][1]).latency_p50_ms
    ```
    """

    format: str
    quantize: str
    file: str
    size_bytes: int
    version: int
    samples: int
    max_abs_diff: Optional[float]
    mean_abs_diff: Optional[float]
    max_rel_diff: Optional[float]
    metrics: dict[str, float]
    top1_agreement: Optional[float]
    latency_p50_ms: Optional[float]
    latency_p99_ms: Optional[float]
    throughput: Optional[float]
    batch_size: int
    threads: int
    flex_ops: list[str]
    dynamic_batch: Optional[bool]
    converter: str
    runtime: str
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        """The row's fields as a JSON object (what parity.json's `rows` hold).

        Example:

        ```python
        json.dumps(row.as_json())
        ```
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ParityRow":
        """The row a JSON object holds (a field it lacks that has no default is an error).

        Args:
            data: one of parity.json's `rows`.

        Example:

        ```python
        ParityRow.from_json(json.loads(Path("RUN/edge/parity.json").read_text())["rows"][0])
        ```
        """
        return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls) if field.name in data})

    @classmethod
    def unmeasured(cls, format: str, quantize: str, file: str, size_bytes: int, version: int, batch_size: int,
                   flex_ops: list[str], converter: str, note: str) -> "ParityRow":
        """The row of a file this machine cannot run (Flex ops without a Flex delegate): no measures, a note.

        Example:

        ```python
        ParityRow.unmeasured("litert", "none", "edge/litert-none/model.tflite", 9000, 3, 50, ["Erf"], "tf 2.21", "...")
        ```
        """
        return cls(format=format, quantize=quantize, file=file, size_bytes=size_bytes, version=version, samples=0,
                   max_abs_diff=None, mean_abs_diff=None, max_rel_diff=None, metrics={}, top1_agreement=None,
                   latency_p50_ms=None, latency_p99_ms=None, throughput=None, batch_size=batch_size, threads=0,
                   flex_ops=list(flex_ops), dynamic_batch=None, converter=converter, runtime="", note=note)


class Scorer:
    """The settings' compiled loss and metrics, computed by Keras on outputs already computed.

    Args:
        settings: the run's `Settings` (`get_total_loss(model)` and `get_metrics(model, loss)` get its model).

    Example:

    ```python
    Scorer(settings)(outputs, labels)    # {'loss': 0.09, 'mean_absolute_error': 0.24}
    ```
    """

    def __init__(self, settings: "Settings") -> None:
        from experiments_manager.training.model import build_model, precision_policy

        self.settings = settings
        with precision_policy(settings.runtime.mixed_precision):
            self.model = build_model(settings)

    def __call__(self, outputs: np.ndarray, labels: object) -> dict[str, float]:
        """{name: value} of the loss and metrics on `outputs` (N x ...) against `labels`; {} without labels."""
        if labels is None:
            return {}
        import keras

        from experiments_manager.training.model import compiled_metrics

        identity = keras.Sequential([keras.Input(shape=outputs.shape[1:], dtype="float32"), keras.layers.Identity()])
        loss = self.settings.training.get_total_loss(self.model)
        identity.compile(loss=loss, metrics=compiled_metrics(self.settings, self.model, loss))
        values = identity.evaluate(outputs.astype(np.float32), labels, batch_size=self.settings.training.batch_size,
                                   verbose=0, return_dict=True)
        return {name: float(value) for name, value in values.items()}


def scored_output(names: list[str]) -> str:
    """The output the metrics are computed on: the only one, else the first by name.

    Example:

    ```python
    scored_output(["prediction_plus_1", "prediction"])   # 'prediction'
    ```
    """
    return sorted(names)[0]


def outputs_of(model: "EdgeModel", batches: "list[Batch]") -> "Arrays":
    """{output name: N x ... array} of `model` over the validation `batches` ([(inputs, labels)]).

    Example:

    ```python
    outputs_of(LiteRTModel(path), batches)["output_0"].shape   # (384, 3)
    ```
    """
    parts: dict[str, list[np.ndarray]] = {}
    for inputs, _ in batches:
        for name, value in model.predict(inputs).items():
            parts.setdefault(name, []).append(np.asarray(value))
    return {name: np.concatenate(values) for name, values in parts.items()}


def labels_of(batches: "list[Batch]") -> Optional[np.ndarray]:
    """The labels of the validation `batches`, concatenated (None when the pipeline gives none, or several:
    `data.py` keeps those as None).

    Args:
        batches: [(inputs, labels)].

    Example:

    ```python
    labels_of(batches).shape   # (384,)
    ```
    """
    labels = [labels for _, labels in batches]
    if any(label is None for label in labels):
        return None
    return np.concatenate(cast("list[np.ndarray]", labels))  # none is None (returned above)


def measure(model: "EdgeModel", reference: "Arrays", batches: "list[Batch]", scorer: Optional[Scorer], version: int,
            converter: str, file: str, size_bytes: int, batch_size: int, quantize: str = "none",
            flex: Optional[list[str]] = None,
            timing_seconds: float = DEFAULT_TIMING_SECONDS) -> ParityRow:
    """The `ParityRow` of `model` against the SavedModel's `reference` outputs on the validation `batches`.

    Args:
        model: an `EdgeModel` (the `SavedModelModel` itself for the reference row).
        reference: the SavedModel's outputs over `batches` (`outputs_of`).
        batches: the validation batches, [(inputs, labels)].
        scorer: a `Scorer`, or None to leave the metrics out.
        version, converter, file, size_bytes: what the row says of the export.
        batch_size: the training batch size, the throughput's batch.
        quantize: the quantization (default 'none'); flex: the Flex ops in the file (default None: []).
        timing_seconds: each timing's duration (default `DEFAULT_TIMING_SECONDS`).

    Example:

    ```python
    measure(model, reference, batches, Scorer(settings), 3, "tf2onnx 1.17.0", "edge/onnx-none/model.onnx", 2048, 50)
    ```
    """
    outputs = outputs_of(model, batches)
    for key, expected in reference.items():  # broadcasting (N,) against (N, 1) would compare every pair
        if key not in outputs or np.shape(outputs[key]) != np.shape(expected):
            raise UserInputError(f"{model.path}: output {key!r}: expected the SavedModel's shape "
                                 f"{list(np.shape(expected))}, got "
                                 f"{list(np.shape(outputs[key])) if key in outputs else 'no such output'}")
    diffs = np.concatenate([np.abs(outputs[name].astype(np.float64) - reference[name]).ravel() for name in reference])
    largest = max(float(np.max(np.abs(value))) for value in reference.values())
    name = scored_output(list(reference))
    labels = labels_of(batches)
    scored, expected = outputs[name], reference[name]
    top1 = None
    if labels is not None and class_ids(labels, expected) is not None:  # evaluate's rule of a classifier
        top1 = float(np.mean(np.argmax(scored, axis=1) == np.argmax(expected, axis=1)))
    from experiments_manager.edge.timing import timings

    p50, p99, throughput = timings(model, batches, batch_size, timing_seconds)
    return ParityRow(
        format=model.format, quantize=quantize, file=file, size_bytes=int(size_bytes), version=int(version),
        samples=int(len(expected)), max_abs_diff=float(diffs.max()), mean_abs_diff=float(diffs.mean()),
        max_rel_diff=float(diffs.max()) / largest if largest else float(diffs.max()),
        metrics=scorer(scored, labels) if scorer is not None else {}, top1_agreement=top1,
        latency_p50_ms=p50, latency_p99_ms=p99, throughput=throughput,
        batch_size=int(batch_size), threads=int(model.threads),
        flex_ops=list(flex or []), dynamic_batch=bool(model.dynamic_batch), converter=converter,
        runtime=model.runtime)


def _size(size_bytes: int) -> str:
    scaled = float(size_bytes)
    for unit in ("B", "KiB", "MiB"):
        if scaled < 1024 or unit == "MiB":
            return f"{scaled:.0f} {unit}" if unit == "B" else f"{scaled:.1f} {unit}"
        scaled /= 1024
    return ""


def _number(value: Optional[float], spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(rows: list[ParityRow]) -> str:
    """The rows side by side as a markdown table (the SavedModel's row first, as given).

    Example:

    ```python
    print(markdown(rows))   # | format | quantization | size | max abs diff | ... |
    ```
    """
    names = list(dict.fromkeys(name for row in rows for name in row.metrics))
    batch = rows[0].batch_size if rows else 0
    header = (["format", "quantization", "size", "max abs diff", "mean abs diff"] + names +
              ["top-1 agreement", "p50 ms (batch 1)", "p99 ms (batch 1)", f"samples/s (batch {batch})", "threads",
               "flex ops", "dynamic batch", "converter", "runtime", "version"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = ([row.format, row.quantize, _size(row.size_bytes), _number(row.max_abs_diff, ".3g"),
                  _number(row.mean_abs_diff, ".3g")]
                 + [f"{row.metrics[name]:.4g}" if name in row.metrics else "" for name in names]
                 + ["" if row.top1_agreement is None else f"{100 * row.top1_agreement:.1f} %",
                    _number(row.latency_p50_ms, ".3f"), _number(row.latency_p99_ms, ".3f"),
                    _number(row.throughput, ",.0f"), str(row.threads or "n/a"), ", ".join(row.flex_ops) or "none",
                    {True: "yes", False: "no", None: "n/a"}[row.dynamic_batch], row.converter or "(reference)",
                    row.runtime or "n/a", str(row.version)])
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"{row.format} {row.quantize}: {row.note}" for row in rows if row.note]
    return "\n".join(lines + ([""] + notes if notes else []))


def write_report(folder: "str | Path", rows: list[ParityRow], title: str = "") -> None:
    """Writes `parity.md` (`title` then the table) and `parity.json` ({'rows': [...]}) into `folder`, each in one
    rename.

    Args:
        folder: where (a target's folder, still its temporary one, or RUN/edge/ for `export --all`).
        rows: the `ParityRow`s, the SavedModel's first.
        title: a line above the table (default '').

    Example:

    ```python
    write_report(run / "edge", rows, title="my_run, version 3")
    ```
    """
    folder = Path(folder)
    write_text_atomically(folder / f"{PARITY_NAME}.md", (f"{title}\n\n" if title else "") + markdown(rows) + "\n")
    write_text_atomically(folder / f"{PARITY_NAME}.json",
                          json.dumps({"title": title, "rows": [row.as_json() for row in rows]}, indent=1) + "\n")
