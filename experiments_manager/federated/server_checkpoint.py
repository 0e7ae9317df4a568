"""The federation server's checkpoint: what the next round needs, written durably after every recorded round.

`checkpoints/global_model.npz` in the server's experiment folder holds the global model's weights after the last
recorded round, the strategy's own state when it keeps one (FedAdam, FedYogi, FedAdagrad: their moments `m_t`,
`v_t`), and the records' state as a run's checkpoint holds it (`run.resume_state.CheckpointState`: the round count
as `epochs_completed`, the best value, the exporter's and history.csv's state). A resumed federation
(`train --resume`, `federated simulate --resume`) starts its next round from it. It is written after the round's
history row, TensorBoard scalars and version, and before run.json and MLflow count the round, so neither claims a
round the checkpoint does not hold: a kill before it redoes the round once (its history row and a version it
exported are set aside as a resumed run's are), a kill after it has the resume count the round in run.json.

It is one `.npz` file replaced atomically (temporary file, fsync, rename, fsync of the folder) and read without
pickle; the zip format's CRC makes a damaged file one line, not wrong weights.

Example:

```python
write_checkpoint(experiment, model.get_weights(), {"m_t": {...}}, state)
restored = read_checkpoint(experiment)   # None before the first round
restored.weights, restored.state["epochs_completed"]
```
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

import numpy as np

from experiments_manager.utils.atomic import replaced_atomically
from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from experiments_manager.run.experiment import Experiment
    from experiments_manager.run.resume_state import CheckpointState

FILE_NAME = "global_model.npz"
STATE_KEY = "state"
WEIGHT_PREFIX = "weight/"
STRATEGY_PREFIX = "strategy/"  # strategy/<attribute>/<name>: a stateful strategy's dict of arrays
STRATEGY_ATTRIBUTES = ("m_t", "v_t")  # Flower's FedOpt family (FedAdam, FedYogi, FedAdagrad): dicts of arrays
LIST_ATTRIBUTES = ("momentum_vector",)  # FedAvgM's server momentum: a list of arrays
LIST_KEY = "{index:05d}"


@dataclasses.dataclass(frozen=True)
class GlobalCheckpoint:
    """A federation's state after a recorded round.

    Args:
        weights: the global model's weights, in `model.get_weights()` order.
        strategy: a stateful strategy's arrays by attribute (`{"m_t": {name: array}, ...}`), or {}.
        state: the records' state (`CheckpointState`: `epochs_completed` is the rounds recorded).
    """

    weights: list[NDArray[Any]]
    strategy: dict[str, dict[str, NDArray[Any]]]
    state: CheckpointState

    @property
    def rounds(self) -> int:
        """The rounds it holds."""
        return int(self.state["epochs_completed"])


def checkpoint_path(experiment: Experiment) -> Path:
    """Where the server's checkpoint is."""
    return experiment.checkpoints_dir / FILE_NAME


def strategy_state(strategy: object) -> dict[str, dict[str, NDArray[Any]]]:
    """The arrays a stateful strategy keeps between rounds (`STRATEGY_ATTRIBUTES`, and `LIST_ATTRIBUTES` by
    index), or {} (FedAvg, FedProx)."""
    state = {name: dict(value) for name in STRATEGY_ATTRIBUTES
             if isinstance(value := getattr(strategy, name, None), dict) and value}
    state.update({name: {LIST_KEY.format(index=index): array for index, array in enumerate(value)}
                  for name in LIST_ATTRIBUTES if isinstance(value := getattr(strategy, name, None), list) and value})
    return state


def restore_strategy(strategy: object, saved: dict[str, dict[str, NDArray[Any]]]) -> None:
    """Gives a strategy the state `strategy_state` saved (a list attribute back in its order)."""
    for name, values in saved.items():
        setattr(strategy, name, [values[key] for key in sorted(values)] if name in LIST_ATTRIBUTES else values)


def write_checkpoint(experiment: Experiment, weights: list[NDArray[Any]],
                     strategy: dict[str, dict[str, NDArray[Any]]], state: CheckpointState) -> None:
    """Replaces the server's checkpoint durably (checking the folder's lease just before the rename)."""
    arrays: dict[str, Any] = {STATE_KEY: np.array(json.dumps(state))}
    arrays.update({f"{WEIGHT_PREFIX}{index:05d}": weight for index, weight in enumerate(weights)})
    for attribute, values in strategy.items():
        arrays.update({f"{STRATEGY_PREFIX}{attribute}/{name}": value for name, value in values.items()})
    with replaced_atomically(checkpoint_path(experiment), before_commit=experiment.check_writer) as tmp:
        with open(tmp, "wb") as handle:  # a file object: np.savez would add '.npz' to a name
            np.savez(handle, **arrays)


def read_checkpoint(experiment: Experiment) -> Optional[GlobalCheckpoint]:
    """The server's checkpoint, or None when it has none yet.

    Raises:
        UserInputError: the file is damaged (a CRC, a missing part, a state that is not a round count).
    """
    path = checkpoint_path(experiment)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            state = json.loads(str(data[STATE_KEY]))
            names = sorted(data.files)
            weights = [data[name] for name in names if name.startswith(WEIGHT_PREFIX)]
            strategy: dict[str, dict[str, Any]] = {}
            for name in names:
                if name.startswith(STRATEGY_PREFIX):
                    attribute, _, key = name[len(STRATEGY_PREFIX):].partition("/")
                    strategy.setdefault(attribute, {})[key] = data[name]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise UserInputError(f"{path}: damaged ({type(error).__name__}: {error}): the federation cannot continue "
                             "from it; start a new one") from None
    rounds = state.get("epochs_completed") if isinstance(state, dict) else None
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise UserInputError(f"{path}: damaged (epochs_completed: expected a round count >= 1, got {rounds!r}): the "
                             "federation cannot continue from it; start a new one")
    if not weights:
        raise UserInputError(f"{path}: damaged (weights: expected the global model's, got none): the federation "
                             "cannot continue from it; start a new one")
    return GlobalCheckpoint(weights, strategy, cast("CheckpointState", state))
