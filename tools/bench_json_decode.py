"""Benchmark: what decoding a REST body costs the server, per MB, against Python's `json` + NumPy.

In one process, rounds alternating the two decoders on the same bytes: the server's (`json_numbers.parse_body`, then
`tensors.rest_inputs` into the float32 input the example model takes) and the plain one (`json.loads`, then
`np.asarray(..., np.float32)`, what a Flask server does). Bodies: valid `{"instances": [[x], ...]}` of 1, 16 and
64 MB, and each request of the hostile corpus (`tools/hostile_requests.py`: nesting, width, numbers, strings,
mixes), where a refusal ends the decode. Reported: median wall and CPU seconds per MB over the rounds, and the
ratio of the two; for the corpus the plain decoder's failures (RecursionError, a 500 in a server that does not
catch it) are named.

Target (issue 69): every request of the corpus under 1 CPU-second per MB.

Usage (from the repository root):

    .venv/bin/python tools/bench_json_decode.py [--rounds 4] [--sizes 1 16 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile_requests  # noqa: E402 - beside this file

SEED = 20261128


def valid_body(megabytes: int) -> bytes:
    """`{"instances": [[x], ...]}` of about `megabytes` MB, values drawn with `SEED`."""
    rows = megabytes * (1 << 20) // 24
    values = np.random.default_rng(SEED).normal(size=rows).astype(np.float32)
    return json.dumps({"instances": [[float(value)] for value in values]}).encode()


def engine_decode(body: bytes) -> str:
    import tensorflow as tf

    from experiments_manager.serving import json_numbers, tensors
    from experiments_manager.serving.errors import RequestError

    try:
        parsed = json_numbers.parse_body(bytearray(body))
        if not isinstance(parsed, dict):
            return "400"
        tensors.rest_inputs(parsed, {"input": tf.TensorSpec([None, 1], tf.float32)})
    except RequestError:
        return "400"
    return "200"


def plain_decode(body: bytes) -> str:
    try:
        parsed = json.loads(body)
        np.asarray(parsed["instances"], np.float32)
    except RecursionError:
        return "RecursionError (500)"
    except (ValueError, TypeError, KeyError):
        return "400"
    return "200"


def timed(decode: Callable[[bytes], str], body: bytes) -> tuple[float, float, str]:
    wall, cpu = time.perf_counter(), time.process_time()
    outcome = decode(body)
    return time.perf_counter() - wall, time.process_time() - cpu, outcome


def measure(name: str, body: bytes, rounds: int) -> dict[str, Any]:
    results: dict[str, list[tuple[float, float, str]]] = {"engine": [], "plain": []}
    for index in range(rounds):
        order = ("engine", "plain") if index % 2 == 0 else ("plain", "engine")
        for which in order:
            results[which].append(timed(engine_decode if which == "engine" else plain_decode, body))
    megabytes = len(body) / 1e6
    row: dict[str, Any] = {"body": name, "MB": megabytes}
    for which, runs in results.items():
        row[f"{which} wall s/MB"] = statistics.median(run[0] for run in runs) / megabytes
        row[f"{which} CPU s/MB"] = statistics.median(run[1] for run in runs) / megabytes
        row[f"{which} answer"] = runs[0][2]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 64])
    arguments = parser.parse_args()
    import tensorflow  # noqa: F401 - imported before the first timing

    print(f"seed {SEED}, {arguments.rounds} rounds, engine and plain alternated", file=sys.stderr)
    rows = [measure(f"valid, {size} MB", valid_body(size), arguments.rounds) for size in arguments.sizes]
    rows += [measure(what, body, arguments.rounds) for what, body, _ in hostile_requests.rest_bodies()]
    print("| body | MB | engine wall / CPU s per MB | answer | plain wall / CPU s per MB | answer |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['body']} | {row['MB']:.1f} | {row['engine wall s/MB']:.3f} / {row['engine CPU s/MB']:.3f} | "
              f"{row['engine answer']} | {row['plain wall s/MB']:.3f} / {row['plain CPU s/MB']:.3f} | "
              f"{row['plain answer']} |")
    worst = max((row for row in rows if row["MB"] >= 0.25), key=lambda row: row["engine CPU s/MB"])
    print(f"\nthe costliest per MB for the engine (bodies of 0.25 MB or more): {worst['body']}, "
          f"{worst['engine CPU s/MB']:.3f} CPU-s per MB (target: under 1)")


if __name__ == "__main__":
    main()
