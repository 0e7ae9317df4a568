"""`experiments-manager export`: a run's version to LiteRT or ONNX, with its parity report (`edge/export.py`)."""

import argparse

from experiments_manager.commands.arguments import (add_registered_run_argument, add_trust_code_argument,
                                                     positive_float, positive_int, resolve_registered_run)
from experiments_manager.edge.formats import (ALL_TARGETS, DEFAULT_CALIBRATION_BATCHES, DEFAULT_TIMING_SECONDS,
                                              EDGE_FOLDER, FORMATS, QUANTIZATIONS, check_target)

NAME = "export"


def add_parser(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    """Adds the `export` sub-parser.

    Args:
        subparsers: the command line's sub-parsers.

    Example:

    ```python
    add_parser(parser.add_subparsers())
    ```
    """
    parser = subparsers.add_parser(
        NAME, help="convert a run's exported version to LiteRT or ONNX, with a parity report",
        description=f"Convert a run's best exported version (or --version N), its SavedModel serving_default "
        f"signature with the EMA weights, to LiteRT (TFLite) or ONNX, into RUN/{EDGE_FOLDER}/<format>-<quantization>/ "
        "(the model file, signature.json, labels.txt, parity.md + parity.json), and print the parity report against "
        "the SavedModel on the validation pipeline: |diff|, the compiled metrics, top-1 agreement, batch-1 latency, "
        "throughput. Needs the [edge] extra.",
    )
    add_registered_run_argument(parser)
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--format", metavar="FORMAT", help=f"{' or '.join(FORMATS)} (LiteRT is TFLite)")
    chosen.add_argument("--all", action="store_true",
                        help="every format and quantization "
                        f"({', '.join(target.folder_name for target in ALL_TARGETS)})"
                        f", and one side-by-side table in RUN/{EDGE_FOLDER}/parity.md")
    parser.add_argument("--quantize", default="none", metavar="|".join(QUANTIZATIONS),
                        help="none (default); fp16 (LiteRT); int8: int8 weights and activations calibrated on "
                        "training batches, float inputs and outputs (LiteRT, ONNX); int8-full: integer-only, int8 "
                        "inputs and outputs (LiteRT)")
    parser.add_argument("--version", type=positive_int, default=None, metavar="N",
                        help="the exported version (default: the one holding the run's best epoch)")
    parser.add_argument("--allow-flex-ops", action="store_true",
                        help="LiteRT: keep ops that need TensorFlow's kernels (Flex, SELECT_TF_OPS) instead of "
                        "refusing them; a Coral or the plain LiteRT runtime cannot run them")
    parser.add_argument("--calibration-batches", type=positive_int, default=None, metavar="N",
                        help="int8: batches of the training pipeline to calibrate on, the run's seed set first "
                        f"(default {DEFAULT_CALIBRATION_BATCHES})")
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="threads of the edge runtimes in the report (default: every core)")
    parser.add_argument("--timing-seconds", type=positive_float, default=DEFAULT_TIMING_SECONDS, metavar="SECONDS",
                        help=f"duration of each latency and throughput measure (default {DEFAULT_TIMING_SECONDS:g})")
    parser.add_argument("--accept-code-change", action="store_true",
                        help="export although a module the run imported (a helper beside its model file) changed "
                        "since it trained (default: refused, naming the file)")
    add_trust_code_argument(parser)
    return parser


def run(arguments: argparse.Namespace, argv: list[str]) -> int:
    """Exports, prints the parity table and where it went; returns 0.

    Args:
        arguments: the parsed command line.
        argv: the command line.

    Example:

    ```python
    run(parser.parse_args(["export", "RUN", "--all"]), argv)
    ```
    """
    from experiments_manager.utils.errors import UserInputError

    if arguments.all and arguments.quantize != "none":
        raise UserInputError(f"--quantize: expected none with --all (which builds every quantization), got "
                             f"{arguments.quantize!r}")
    resolve_registered_run(arguments)
    targets = list(ALL_TARGETS) if arguments.all else [check_target(arguments.format, arguments.quantize)]
    from experiments_manager.edge.formats import require_edge_extra

    require_edge_extra()  # before TensorFlow is imported: the one line comes at once
    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.version_records import chosen_version

    experiment = Experiment.open(arguments.run, trust_code=arguments.trust_code)
    chosen_version(experiment, arguments.version, option="--version")  # the same, at once
    experiment.refuse_foreign_code()
    experiment.refuse_code_changes("export", arguments.accept_code_change, "--accept-code-change")
    from experiments_manager.utils.native_noise import import_tensorflow_quietly

    import_tensorflow_quietly()
    from pathlib import Path

    from experiments_manager.edge.export import export_edge
    from experiments_manager.edge.parity import markdown

    rows = export_edge(experiment, targets, arguments.version, allow_flex=arguments.allow_flex_ops,
                       threads=arguments.threads, calibration_batches=arguments.calibration_batches,
                       timing_seconds=arguments.timing_seconds, table=arguments.all,
                       accept_code_change=arguments.accept_code_change)
    print(markdown(rows))
    print()
    base = Path(arguments.run) / EDGE_FOLDER
    for row in rows[1:]:
        print(f"{row.format} {row.quantize}: {Path(arguments.run) / row.file}")
    if arguments.all:
        print(f"table: {base / 'parity.md'} (and parity.json)")
    else:
        print(f"report: {base / targets[0].folder_name / 'parity.md'} (and parity.json, signature.json)")
    return 0
