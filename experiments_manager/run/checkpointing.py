"""Training checkpoints: what `train --resume` needs to continue a run.

A checkpoint is a folder `checkpoints/ckpt-<N>/` holding

- `model.weights.h5`: the model's (raw, not EMA) weights, as `model.save_weights` writes them but without the
  optimizer (an earlier engine's checkpoints hold it there too; a restore does not read it there);
- `optimizer.npz`: every optimizer variable (iteration count, learning rate,
  EMA averages, slots), in the optimizer's own order;
- `state.json`: the number of completed epochs, the state of the callbacks
  (early stopping, LR on plateau, best monitored value, history), and the size and
  SHA-256 of each of the files above (`files`): `resume_state.CheckpointState`.

It is written to a dot-prefixed temporary folder, fsynced and renamed, so a crash or a power loss at any point
leaves either the previous checkpoint or the new one, never a partial one. A resume uses the newest checkpoint
whose files match their checksums; a damaged one (a file overwritten, truncated, missing, or no state.json) is
moved aside to `checkpoints/damaged-ckpt-<N>/` with one warning line. Numbers continue past every folder there
is, and pruning keeps the newest good ones.
"""

import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from experiments_manager.run.migrations import current_checkpoint_state
from experiments_manager.run.resume_state import CheckpointState
from experiments_manager.run.weights_file import (WeightsContent, WeightsFileMaker, content_bytes,
                                                  left_out_of_weights_file)
from experiments_manager.utils.atomic import PathLike, folder_replaced_atomically, fsync_folder, remove_tree_atomically
from experiments_manager.utils.checksums import file_digest, set_aside
from experiments_manager.utils.errors import UserInputError

CHECKPOINT_PATTERN = re.compile(r"^ckpt-(\d+)$")
ANY_NUMBERED = re.compile(r"^(?:damaged-)?ckpt-(\d+)(?:-\d+)?$")  # what a new number must pass
STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.h5"
OPTIMIZER_FILE = "optimizer.npz"
DAMAGED_PREFIX = "damaged-"


class CheckpointSnapshot(NamedTuple):
    """A checkpoint's content, copied on the training thread (`Checkpointer.snapshot`), written by
    `Checkpointer.write`.

    Args:
        weights: the content of `model.weights.h5`: its bytes, or a copy of the weights they are made from in the
            writer's thread (`weights_file.WeightsCopy`).
        optimizer_values: `optimizer.npz`'s arrays by name (`v00000`, ... in the optimizer's order).
        state: what `state.json` records besides the files' checksums (a JSON copy).
    """

    weights: WeightsContent
    optimizer_values: dict[str, "np.ndarray[Any, Any]"]
    state: CheckpointState


def verify(folder: PathLike) -> "str | None":
    """What is wrong with the checkpoint `folder` (one phrase), or None when its files match their record.

    A checkpoint written before checksums were recorded is checked for its files being there and not empty.
    """
    folder = Path(folder)
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except FileNotFoundError:
        return f"no {STATE_FILE}"
    except (OSError, ValueError) as error:
        return f"{STATE_FILE} unreadable ({error})"
    if not isinstance(state, dict) or not isinstance(state.get("epochs_completed"), int):
        return f"{STATE_FILE} has no epochs_completed"
    recorded = state.get("files")
    for name in (WEIGHTS_FILE, OPTIMIZER_FILE):
        path = folder / name
        try:
            if recorded is None:
                if path.stat().st_size == 0:
                    return f"{name} is empty"
                continue
            found = file_digest(path)
        except OSError as error:
            return f"{name} unreadable ({error.strerror})"
        expected = recorded.get(name) or {}
        if found["size"] != expected.get("size"):
            return f"{name} has {found['size']} bytes, {expected.get('size')} were written"
        if found["sha256"] != expected.get("sha256"):
            return f"{name} differs from what was written (SHA-256)"
    return None


class Checkpointer:
    """Saves and restores model, optimizer and callback state.

    Args:
        folder: the experiment's `checkpoints/` folder.
        keep: how many checkpoints to keep (the newest; default 2).
        check_writer: called before each save; raises when this process may no longer write (default: none).

    Example:

    ```python
    checkpointer = Checkpointer(experiment.checkpoints_dir)
    checkpointer.save(model, optimizer, {"state_version": 2, "epochs_completed": 3, "callbacks": {}})
    state = checkpointer.restore_latest(model, optimizer)
    ```
    """

    def __init__(self, folder: PathLike, keep: int = 2, check_writer: "Callable[[], None] | None" = None) -> None:
        self.folder = Path(folder)
        self.keep = keep
        self.check_writer = check_writer or (lambda: None)
        self._good: Path | None = None  # the folder `set_aside_damaged` verified last: a restore does not hash it again
        self._weights: WeightsFileMaker | None = None  # the weights file's walk of the model checkpointed, recorded

    def _numbered(self) -> list[tuple[int, Path]]:
        """(number, folder) of every `ckpt-N` folder, complete or not, oldest first."""
        found = []
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                match = CHECKPOINT_PATTERN.match(path.name)
                if match and path.is_dir():
                    found.append((int(match.group(1)), path))
        return sorted(found)

    def _next_number(self) -> int:
        numbers = [int(match.group(1)) for match in map(ANY_NUMBERED.match, self._names()) if match]
        return max(numbers, default=0) + 1

    def _names(self) -> list[str]:
        return [path.name for path in self.folder.iterdir()] if self.folder.is_dir() else []

    def examined(self) -> list[tuple[Path, "str | None"]]:
        """(folder, what is wrong or None) of every `ckpt-N` folder, oldest first (`experiments-manager check`)."""
        return [(path, verify(path)) for _, path in self._numbered()]

    def latest(self) -> Path | None:
        """The newest checkpoint folder whose files match their record, or None (nothing is moved)."""
        for _, path in reversed(self._numbered()):
            if verify(path) is None:
                return path
        return None

    def latest_state(self) -> CheckpointState | None:
        """The newest good checkpoint's state dict (without loading weights), or None."""
        latest = self.latest()
        return current_checkpoint_state(json.loads((latest / STATE_FILE).read_text())) if latest else None

    def set_aside_damaged(self) -> Path | None:
        """Moves every checkpoint newer than the newest good one to `damaged-ckpt-<N>` (one warning line each);
        returns the newest good folder, or None. Only the experiment's writer (its lease holder) calls it."""
        for _, path in reversed(self._numbered()):
            problem = None if path == self._good else verify(path)
            if problem is None:
                self._good = path
                return path
            self._set_aside(path, problem)
        return None

    def resumable_state(self) -> CheckpointState | None:
        """The state of the checkpoint a resume continues from (damaged newer ones moved aside first), or None."""
        latest = self.set_aside_damaged()
        return current_checkpoint_state(json.loads((latest / STATE_FILE).read_text())) if latest else None

    def _set_aside(self, path: Path, problem: str) -> None:
        set_aside(path, f"{DAMAGED_PREFIX}{path.name}", f"damaged ({problem}), the checkpoint before it is used")

    def save(self, model: Any, optimizer: Any, state: CheckpointState) -> Path:
        """Writes a new checkpoint atomically and durably, with its files' checksums; prunes old good ones: a
        `snapshot` written at once (`write`)."""
        return self.write(self.snapshot(model, optimizer, state))

    def snapshot(self, model: Any, optimizer: Any, state: CheckpointState) -> "CheckpointSnapshot":
        """What a checkpoint of `model`, `optimizer` and `state` holds, as copies (on the thread that trains: the
        values change at the next step); `write` then puts it on disk from any thread."""
        self.check_writer()  # a run that lost its lease copies nothing either (`write` checks again)
        if self._weights is None or self._weights.model is not model:
            self._weights = WeightsFileMaker(model, lambda: left_out_of_weights_file(model))
        return CheckpointSnapshot(
            self._weights.copy(),  # the variables' values copied; the file made in `write`
            {f"v{index:05d}": np.array(np.asarray(variable)) for index, variable in enumerate(optimizer.variables)},
            json.loads(json.dumps(state)))

    def write(self, snapshot: "CheckpointSnapshot") -> Path:
        """Writes `snapshot` as the next checkpoint, atomically and durably (durable when this returns); prunes old
        good ones. Touches no model: any thread may call it, one at a time."""
        self.check_writer()  # still the experiment's one writer (its lease)
        if not self.folder.is_dir():
            self.folder.mkdir(parents=True)
            fsync_folder(self.folder.parent)  # its name survives a power loss
        number = self._next_number()
        final = self.folder / f"ckpt-{number:06d}"
        with folder_replaced_atomically(self.folder / f".tmp-ckpt-{number:06d}-{os.getpid()}", final,
                                        before_commit=self.check_writer) as tmp:  # and again once it is durable
            tmp.mkdir()
            (tmp / WEIGHTS_FILE).write_bytes(content_bytes(snapshot.weights))
            values: dict[str, Any] = dict(snapshot.optimizer_values)  # Any: np.savez's **kwds
            np.savez(tmp / OPTIMIZER_FILE, **values)
            files = {name: file_digest(tmp / name) for name in (WEIGHTS_FILE, OPTIMIZER_FILE)}
            # state.json last: its presence marks the folder complete, and it records what the others hold
            (tmp / STATE_FILE).write_text(json.dumps({**snapshot.state, "files": files}, indent=2))
        good = [path for _, path in self._numbered() if path == final or (path / STATE_FILE).is_file()]
        for old in good[: -self.keep]:
            remove_tree_atomically(old)
        return final

    def restore_latest(self, model: Any, optimizer: Any) -> CheckpointState | None:
        """Loads the newest good checkpoint into `model` and `optimizer`; a damaged one is moved aside first.

        The optimizer must be built (`optimizer.build(model.trainable_variables)`).

        Returns:
            the saved state dict, or None when there is no good checkpoint.
        """
        while True:
            latest = self.set_aside_damaged()
            if latest is None:
                return None
            try:
                skipped = _weights_loaded(model, latest / WEIGHTS_FILE)
                with np.load(latest / OPTIMIZER_FILE) as saved:
                    values = [saved[key] for key in sorted(saved.files)]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
                reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                if "files" in json.loads((latest / STATE_FILE).read_text()):  # its files are as written: the model
                    raise UserInputError(f"{latest}: does not fit the model ({reason}): was the model changed "
                                         "since the run started?") from None
                self._set_aside(latest, reason)  # a checkpoint of an engine without checksums: damaged, then
                self._good = None
                continue
            break
        if skipped:
            raise UserInputError(
                f"{latest}: expected the checkpoint's state for every optimizer of the model, got {skipped[0]}: "
                "a resume would restart it; build it in the model file before training (its `build` on the "
                "variables it trains) or start a new run from the weights with --init-from "
                f"{latest.parent.parent}")
        problem = optimizer_mismatch([value.shape for value in values], optimizer)
        if problem is not None:
            raise UserInputError(f"{latest}: {problem}: the optimizer (or EMA, or mixed precision) changed since the "
                                 f"run started; start a new run from its weights with --init-from "
                                 f"{latest.parent.parent}")
        for variable, value in zip(optimizer.variables, values):
            variable.assign(value)
        return current_checkpoint_state(json.loads((latest / STATE_FILE).read_text()))


def _weights_loaded(model: Any, path: Path) -> list[str]:
    """Loads the checkpoint's weights file into `model` (its compiled optimizer left out: `optimizer.npz` holds it);
    returns what Keras skipped instead of loading, one phrase each: another optimizer of the model (a GAN's second
    one) that is not built, or not built alike, which Keras leaves as it is with only a warning."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(str(path), objects_to_skip=left_out_of_weights_file(model))
    skipped = []
    for warning in caught:
        text = str(warning.message)
        if text.startswith("Skipping variable loading for optimizer"):
            skipped.append(text.removeprefix("Skipping variable loading for ").split(". ")[0].rstrip("."))
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return skipped


def saved_optimizer_shapes(folder: PathLike) -> list[tuple[int, ...]]:
    """The shapes of the optimizer variables a checkpoint holds, in the optimizer's order."""
    with np.load(Path(folder) / OPTIMIZER_FILE) as saved:
        return [tuple(saved[key].shape) for key in sorted(saved.files)]


def optimizer_mismatch(shapes: list[Any], optimizer: Any) -> "str | None":
    """Why a checkpoint's optimizer variables (their `shapes`, in order) cannot be `optimizer`'s (built), or None.

    Example:

    ```python
    optimizer_mismatch(saved_optimizer_shapes("checkpoints/ckpt-000003"), model.optimizer)   # None: it fits
    ```
    """
    variables = list(optimizer.variables)
    if len(shapes) != len(variables):
        return f"optimizer.npz holds {len(shapes)} variables, the optimizer has {len(variables)}"
    for variable, shape in zip(variables, shapes):
        if tuple(variable.shape) != tuple(shape):
            return (f"optimizer variable {variable.path} has shape {tuple(shape)} in optimizer.npz, expected "
                    f"{tuple(variable.shape)}")
    return None
