"""Training checkpoints: what `train --resume` needs to continue a run.

A checkpoint is a folder `checkpoints/ckpt-<N>/` holding

- `model.weights.h5`: the model's (raw, not EMA) weights;
- `optimizer.npz`: every optimizer variable (iteration count, learning rate,
  EMA averages, slots), in the optimizer's own order;
- `state.json`: the number of completed epochs and the state of the callbacks
  (early stopping, LR on plateau, best monitored value).

It is written to a dot-prefixed temporary folder and renamed, so a crash at any
point leaves either the previous checkpoint or the new one, never a partial one.
"""

import json
import os
import re
from pathlib import Path

import numpy as np

from experiments_manager.utils.atomic import folder_replaced_atomically, remove_tree_atomically

CHECKPOINT_PATTERN = re.compile(r"^ckpt-(\d+)$")
STATE_FILE = "state.json"


class Checkpointer:
    """Saves and restores model, optimizer and callback state.

    Args:
        folder: the experiment's `checkpoints/` folder.
        keep: how many checkpoints to keep (the newest).

    Example:

    ```python
    checkpointer = Checkpointer(experiment.checkpoints_dir)
    checkpointer.save(model, optimizer, {"epochs_completed": 3, "callbacks": {}})
    state = checkpointer.restore_latest(model, optimizer)
    ```
    """

    def __init__(self, folder, keep=2):
        self.folder = Path(folder)
        self.keep = keep

    def _numbered(self):
        found = []
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                match = CHECKPOINT_PATTERN.match(path.name)
                if match and (path / STATE_FILE).is_file():
                    found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self):
        """The newest complete checkpoint folder, or None."""
        numbered = self._numbered()
        return numbered[-1][1] if numbered else None

    def latest_state(self):
        """The newest checkpoint's state dict (without loading weights), or None."""
        latest = self.latest()
        return json.loads((latest / STATE_FILE).read_text()) if latest else None

    def save(self, model, optimizer, state):
        """Writes a new checkpoint atomically and prunes old ones."""
        self.folder.mkdir(parents=True, exist_ok=True)
        numbered = self._numbered()
        number = numbered[-1][0] + 1 if numbered else 1
        final = self.folder / f"ckpt-{number:06d}"
        with folder_replaced_atomically(self.folder / f".tmp-ckpt-{number:06d}-{os.getpid()}", final) as tmp:
            tmp.mkdir()
            model.save_weights(str(tmp / "model.weights.h5"))
            values = {f"v{index:05d}": np.asarray(variable) for index, variable in enumerate(optimizer.variables)}
            np.savez(tmp / "optimizer.npz", **values)
            # state.json last: its presence marks the folder complete
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
        for _, old in self._numbered()[: -self.keep]:
            remove_tree_atomically(old)
        return final

    def restore_latest(self, model, optimizer):
        """Loads the newest checkpoint into `model` and `optimizer`.

        The optimizer must be built (`optimizer.build(model.trainable_variables)`).

        Returns:
            the saved state dict, or None when there is no checkpoint.
        """
        latest = self.latest()
        if latest is None:
            return None
        model.load_weights(str(latest / "model.weights.h5"))
        with np.load(latest / "optimizer.npz") as saved:
            values = [saved[key] for key in sorted(saved.files)]
        variables = list(optimizer.variables)
        if len(values) != len(variables):
            raise RuntimeError(
                f"{latest}: optimizer.npz holds {len(values)} variables, the optimizer has "
                f"{len(variables)}: was the optimizer or the model changed since the run started?"
            )
        for variable, value in zip(variables, values):
            if tuple(variable.shape) != value.shape:
                raise RuntimeError(f"{latest}: optimizer variable {variable.path} has shape {value.shape}, expected {tuple(variable.shape)}")
            variable.assign(value)
        return self.latest_state()
