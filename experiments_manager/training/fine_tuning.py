"""Fine-tuning: a new run that starts from the weights of another run's exported version.

`train SETTINGS --init-from RUN[:VERSION]` (`em.train(..., init_from=RUN)`) builds the new run's model from its own
settings, then loads into it the weights a version of RUN holds: the best version by default (the one holding the
run's best epoch), or VERSION. A version holds the EMA weights (what the run validated, exported and served), so
those are what the new run starts from; the optimizer (its moments, its step count, the EMA averages) starts
fresh. The version's state is matched to the new model through the version's own object graph, as a server reads
it (`export.saved_state.restore_version`): its variables, the lookup tables its checkpoint holds, and the
vocabularies of its lookup layers (the source run's, also when the new run's data would adapt another). The same
model file architecture and served module are needed, and the first weight that does not fit is named in one line
before any folder is created (the dry build loads them once).
run.json records the link as `fine_tuned_from`: `{"run": "<absolute path>", "version": N}`; a resume that finds no
checkpoint loads the same weights again.

Example:

```python
weights = InitialWeights.parse("experiments/curve_fitting/my_test_2026-11-21--10-00-00:3")
weights.load_into(model, settings)
```
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from experiments_manager.run.experiment import Experiment
from experiments_manager.utils.errors import UserInputError
from experiments_manager.run.version_records import chosen_version

if TYPE_CHECKING:
    from experiments_manager.run.record import RunRecord
    from experiments_manager.settings.loader import Settings
    from experiments_manager.training.ema import WeightAverages
    from experiments_manager.utils.atomic import PathLike

OPTION = "--init-from"
RUN_INFO_KEY = "fine_tuned_from"
_VERSION_SUFFIX = re.compile(r"^(?P<run>.+):(?P<version>\d+)$")


@dataclasses.dataclass(frozen=True)
class InitialWeights:
    """The exported version a new run starts from.

    Args:
        run: the source run's folder (absolute).
        version: the version number.
    """

    run: Path
    version: int

    @property
    def folder(self) -> Path:
        """The version's SavedModel folder."""
        return Experiment(self.run).export_dir / str(self.version)

    def describe(self) -> str:
        """'<run> version N', for log lines and messages."""
        return f"{self.run} version {self.version}"

    def as_json(self) -> dict[str, Any]:
        """run.json's `fine_tuned_from`."""
        return {"run": str(self.run), "version": self.version}

    @classmethod
    def parse(cls, spec: PathLike) -> "InitialWeights":
        """The version `RUN` (its best) or `RUN:VERSION` names, checked: one line when RUN is no run, has no
        version yet, or not that one.

        Example:

        ```python
        InitialWeights.parse("experiments/my_test_2026-11-21--10-00-00")     # its best version
        ```
        """
        text = str(spec)
        match = _VERSION_SUFFIX.match(text)
        path, asked = (match["run"], int(match["version"])) if match and not Path(text).is_dir() else (text, None)
        if not Path(path).is_dir():
            raise UserInputError(f"{OPTION}: expected an experiment folder (RUN or RUN:VERSION), got {text!r}: "
                                 "no such folder")
        experiment = Experiment.open(path)
        version, _, _ = chosen_version(experiment, asked, option=OPTION)  # one line: no version yet, not that one
        return cls(experiment.root.resolve(), version)

    @classmethod
    def recorded(cls, info: RunRecord) -> Optional["InitialWeights"]:
        """The version run.json's `fine_tuned_from` names, or None (not a fine-tuned run, or a damaged key)."""
        link = info.get(RUN_INFO_KEY)
        if not isinstance(link, dict) or not isinstance(link.get("run"), str) or not isinstance(link.get("version"),
                                                                                               int):
            return None
        return cls(Path(link["run"]), link["version"])

    def load_into(self, model: Any, settings: Settings, averages: Optional[WeightAverages] = None,
                  option: str = OPTION) -> None:
        """Reads the version into `model`: its weights, its checkpointed lookup tables and its lookup layers'
        vocabularies; one line naming the first that does not fit. What `em.load` reads a version with too.

        Args:
            model: the new run's built model.
            settings: its `Settings` (its served module maps the version's checkpoint keys to the variables).
            averages: the run's `WeightAverages` (EMA), restarted from the loaded weights (default None: none).
            option: what a message names as the asker (default `--init-from`).

        Raises:
            UserInputError: the version cannot be read, or its weights are not the new model's.
        """
        from experiments_manager.export.saved_state import VersionMismatch, restore_version
        from experiments_manager.export.served_module import served_module
        from experiments_manager.utils.checksums import verify_manifest

        where = f"{self.describe()}: {option}"
        problem = verify_manifest(self.folder) if self.folder.is_dir() else "its folder is gone"
        if problem is not None:
            raise UserInputError(f"{where}: expected a readable SavedModel version, got: {problem}")
        try:
            restore_version(self.folder, served_module(settings, model), model)
        except VersionMismatch as error:
            raise UserInputError(f"{where}: {error}") from None
        if averages is not None:
            averages.restart(model)  # the EMA starts from the loaded weights, not from the random ones

