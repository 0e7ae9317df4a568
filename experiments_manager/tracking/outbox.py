"""What a run has to tell MLflow, kept in its folder until a server has it: the outbox.

`mlflow_outbox.jsonl` holds one JSON entry a line, numbered from 1 (`OutboxEntry`): the run's start (its
parameters and tags), each epoch's metrics (once its checkpoint is durable), each exported version (once on disk),
each attempt's start and end. Lines are appended by the run's writer (it holds the lease) and fsynced; a line a crash
cut short is ignored, and left out by the next append. A whole line that is not an entry (junk, a number out of order:
a damaged file) is left out and named (`damaged_lines`); `drop_damaged` rewrites the file without it, and the run's
own files give back what it held (`TrackingSession.complete`). `mlflow_sent.json` (`SentState`, replaced atomically)
says through which entry a server has everything, and the MLflow run they went to: a sender (`sender.py`) starts after
it, so nothing is sent twice by the engine, and what a server took again after a crash (the entries after the last
recorded one) it stores once (MLflow keeps one metric per key, step, time and value). No MLflow import.

Example:

```python
outbox = Outbox(experiment.root)
outbox.append({"kind": "metrics", "step": 3, "metrics": {"loss": 0.25}})
[entry["n"] for entry in outbox.pending()]     # [.., 7]: not sent yet
```
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Literal, Optional, TypedDict, cast

from experiments_manager.utils.atomic import PathLike, write_json_atomically, write_text_atomically

OUTBOX_NAME = "mlflow_outbox.jsonl"
SENT_NAME = "mlflow_sent.json"
Kind = Literal["start", "attempt", "metrics", "version", "end"]
KINDS = ("start", "attempt", "metrics", "version", "end")


class OutboxEntry(TypedDict, total=False):
    """One entry of the outbox.

    Keys: `n` (its number, from 1), `kind` ('start': the run, once; 'attempt': a resume began; 'metrics': an
    epoch's; 'version': an exported version on disk; 'end': how an attempt ended, with the run's best value at its
    best epoch and its monitor as tags), `at` (milliseconds since the epoch, when it was recorded), `step` (the
    epoch, from 1), `metrics`, `params`, `tags`, `status` (MLflow's: RUNNING, FINISHED, FAILED, KILLED), `files` (the
    run folder's files to upload at an end), `experiment` and `run_name` (a start's MLflow experiment and run name),
    `version`, `path` (a version's number and folder, relative to the run's), `registered_model` (the registered
    model a version that improved on the run's earlier ones joins; absent: not registered).
    """

    n: int
    kind: Kind
    at: int
    step: int
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    status: str
    files: list[str]
    experiment: str
    run_name: str
    version: int
    path: str
    registered_model: str


class SentState(TypedDict, total=False):
    """`mlflow_sent.json`: the server, its MLflow experiment and run, the last entry it has, and the entries it
    refused (left out)."""

    tracking_uri: str
    experiment_id: str
    run_id: str
    sent_through: int
    refused: list[int]


class SweepRun(TypedDict):
    """`mlflow_sweep_run.json` in a sweep folder: the sweep's MLflow run on a server (the first trial to send names
    it, `sender._sweep_run`)."""

    tracking_uri: str
    run_id: str


class Outbox:
    """A run folder's outbox.

    Args:
        folder: the run folder.
        check_writer: called before each write; raises when this process may no longer write the folder (default:
            none; `Experiment.check_writer`).
    """

    def __init__(self, folder: PathLike, check_writer: Optional[Callable[[], None]] = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / OUTBOX_NAME
        self.sent_path = self.folder / SENT_NAME
        self._check_writer = check_writer or (lambda: None)
        self._lock = threading.Lock()  # the training thread's entries and the checkpoint thread's
        self._tail: Optional[tuple[int, int]] = None  # (the last entry's number, the offset after it): this writer's

    def exists(self) -> bool:
        return self.path.is_file()

    def append(self, entry: OutboxEntry) -> OutboxEntry:
        """Appends `entry`, numbered and timed, durably (fsynced); returns it as written."""
        with self._lock:
            self._check_writer()
            if self._tail is None:  # read once: this process is the run's one writer
                _, cut, _, highest = self._read()  # numbered past every number seen or sent: none is reused
                self._tail = (max(highest, self.sent().get("sent_through", 0)), cut)
            last, cut = self._tail
            numbered: OutboxEntry = {**entry, "n": last + 1, "at": entry.get("at", int(time.time() * 1000))}
            line = (json.dumps(numbered, separators=(",", ":"), allow_nan=True) + "\n").encode()
            with open(self.path, "r+b" if self.path.exists() else "wb") as handle:
                handle.seek(cut)  # after the last whole line: a line a crash cut short is overwritten
                handle.write(line)
                handle.truncate()
                handle.flush()
                os.fsync(handle.fileno())
            self._tail = (last + 1, cut + len(line))
            return numbered

    def entries(self) -> list[OutboxEntry]:
        """Every whole entry, oldest first (damaged lines left out)."""
        with self._lock:
            return self._read()[0]

    def damaged_lines(self) -> list[int]:
        """The numbers (from 1) of the whole lines that are not entries: junk, or an entry whose number is not above
        the one before it. A last line without its newline (a crash mid-append) is not damage."""
        with self._lock:
            return self._read()[2]

    def drop_damaged(self) -> None:
        """Rewrites the file with its entries only (atomically, durably): its damaged lines are gone."""
        with self._lock:
            self._check_writer()
            entries = self._read()[0]
            text = "".join(json.dumps(entry, separators=(",", ":"), allow_nan=True) + "\n" for entry in entries)
            write_text_atomically(self.path, text)
            self._tail = None

    def _read(self) -> tuple[list[OutboxEntry], int, list[int], int]:
        """(the entries, the byte offset after the last whole line, the damaged lines' numbers, the highest entry
        number any line holds). The entries are the longest run of lines whose numbers rise (one line whose number
        a bit flip raised is the damaged one, not every line after it)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0, [], 0
        lines = data.split(b"\n")[:-1]  # the piece after the last newline: empty, or cut short by a crash
        parsed = [(number, entry) for number, line in enumerate(lines, 1) if (entry := _entry(line)) is not None]
        kept = set(_longest_rising([entry["n"] for _, entry in parsed]))
        entries = [entry for index, (_, entry) in enumerate(parsed) if index in kept]
        good = {number for index, (number, _) in enumerate(parsed) if index in kept}
        damaged = [number for number in range(1, len(lines) + 1) if number not in good]
        highest = max((entry["n"] for _, entry in parsed), default=0)
        return entries, sum(len(line) + 1 for line in lines), damaged, highest

    def sent(self) -> SentState:
        """What a server has ({} before anything was sent)."""
        try:
            return cast(SentState, json.loads(self.sent_path.read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def pending(self) -> list[OutboxEntry]:
        """The entries no server has yet, oldest first."""
        through = self.sent().get("sent_through", 0)
        return [entry for entry in self.entries() if entry["n"] > through]

    def mark_sent(self, state: SentState) -> None:
        """Records, atomically and durably, what a server has now."""
        self._check_writer()
        write_json_atomically(self.sent_path, cast("dict[str, Any]", state))

    def last_epoch(self) -> int:
        """The last epoch whose metrics the outbox holds (0: none)."""
        return max((entry.get("step", 0) for entry in self.entries() if entry.get("kind") == "metrics"), default=0)

    def versions(self) -> list[OutboxEntry]:
        """The exported versions the outbox holds, oldest first."""
        return [entry for entry in self.entries() if entry.get("kind") == "version"]


def _entry(line: bytes) -> Optional[OutboxEntry]:
    """The entry a line holds, or None when it is not one (a JSON object with a number `n` and a known `kind`)."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or type(value.get("n")) is not int or value.get("kind") not in KINDS:
        return None
    return cast(OutboxEntry, value)


def _longest_rising(numbers: list[int]) -> list[int]:
    """The indexes of a longest strictly rising subsequence of `numbers` (the first found), in O(n log n)."""
    tails: list[int] = []  # tails[k]: the index ending the best rising run of length k + 1 so far
    before: list[int] = [-1] * len(numbers)
    for index, number in enumerate(numbers):
        low, high = 0, len(tails)
        while low < high:
            middle = (low + high) // 2
            if numbers[tails[middle]] < number:
                low = middle + 1
            else:
                high = middle
        before[index] = tails[low - 1] if low else -1
        if low == len(tails):
            tails.append(index)
        else:
            tails[low] = index
    run, index = [], tails[-1] if tails else -1
    while index >= 0:
        run.append(index)
        index = before[index]
    return run[::-1]
