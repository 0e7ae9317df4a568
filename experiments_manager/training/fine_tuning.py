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

With `--skip-mismatch` (`em.train(..., init_from=RUN, skip_mismatch=True)`) each layer with a weight whose shape does
not fit the new model (a new head: another number of classes) is left as the new model made it, by Keras' own
`load_weights(skip_mismatch=True)`, and its weights listed: in the log, and in run.json's `fine_tuned_from` as
`"skip_mismatch": true, "skipped": ["head/kernel: expected the new model's shape (6, 4), got (6, 3)", ...]`.

Example:

```python
weights = InitialWeights.parse("experiments/curve_fitting/my_test_2026-11-21--10-00-00:3")
weights.load_into(model, settings)
```
"""

from __future__ import annotations

import dataclasses
import logging
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

_LOG = logging.getLogger(__name__)
OPTION = "--init-from"
RUN_INFO_KEY = "fine_tuned_from"
SKIP_MISMATCH_OPTION = "--skip-mismatch"
SKIP_MISMATCH_KEY = "skip_mismatch"  # in run.json's `fine_tuned_from`, beside the list `skipped`
SKIPPED_KEY = "skipped"
_VERSION_SUFFIX = re.compile(r"^(?P<run>.+):(?P<version>\d+)$")


@dataclasses.dataclass(frozen=True)
class InitialWeights:
    """The exported version a new run starts from.

    Args:
        run: the source run's folder (absolute).
        version: the version number.
        skip_mismatch: leave the weights whose shape does not fit the new model as it made them, and list them
            (default False: refuse them, in one line).
    """

    run: Path
    version: int
    skip_mismatch: bool = False

    @property
    def folder(self) -> Path:
        """The version's SavedModel folder."""
        return Experiment(self.run).export_dir / str(self.version)

    def describe(self) -> str:
        """'<run> version N', for log lines and messages."""
        return f"{self.run} version {self.version}"

    def as_json(self) -> dict[str, Any]:
        """run.json's `fine_tuned_from`."""
        return {"run": str(self.run), "version": self.version,
                **({SKIP_MISMATCH_KEY: True} if self.skip_mismatch else {})}

    @classmethod
    def parse(cls, spec: PathLike, skip_mismatch: bool = False) -> "InitialWeights":
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
        return cls(experiment.root.resolve(), version, skip_mismatch)

    @classmethod
    def recorded(cls, info: RunRecord) -> Optional["InitialWeights"]:
        """The version run.json's `fine_tuned_from` names, or None (not a fine-tuned run, or a damaged key)."""
        link = info.get(RUN_INFO_KEY)
        if not isinstance(link, dict) or not isinstance(link.get("run"), str) or not isinstance(link.get("version"),
                                                                                               int):
            return None
        return cls(Path(link["run"]), link["version"], link.get(SKIP_MISMATCH_KEY) is True)

    def load_into(self, model: Any, settings: Settings, averages: Optional[WeightAverages] = None,
                  option: str = OPTION) -> list[str]:
        """Reads the version into `model`: its weights, its checkpointed lookup tables and its lookup layers'
        vocabularies; one line naming the first that does not fit. What `em.load` reads a version with too.

        Args:
            model: the new run's built model.
            settings: its `Settings` (its served module maps the version's checkpoint keys to the variables).
            averages: the run's `WeightAverages` (EMA), restarted from the loaded weights (default None: none).
            option: what a message names as the asker (default `--init-from`).

        Returns:
            the weights left as the model made them (with `skip_mismatch`; else empty).

        Raises:
            UserInputError: the version cannot be read, or its weights are not the new model's.
        """
        from experiments_manager.export.keras_weights import WeightsDiffer
        from experiments_manager.export.saved_state import VersionMismatch, restore_version
        from experiments_manager.export.served_module import served_module
        from experiments_manager.utils.checksums import verify_manifest

        where = f"{self.describe()}: {option}"
        problem = verify_manifest(self.folder) if self.folder.is_dir() else "its folder is gone"
        if problem is not None:
            raise UserInputError(f"{where}: expected a readable SavedModel version, got: {problem}")
        try:
            skipped = restore_version(self.folder, served_module(settings, model), model, self.skip_mismatch)
        except VersionMismatch as error:
            advice = ("; to load only the weights that fit (a new head), add " + SKIP_MISMATCH_OPTION
                      if isinstance(error, WeightsDiffer) and option == OPTION else "")
            raise UserInputError(f"{where}: {error}{advice}") from None
        if averages is not None:
            averages.restart(model)  # the EMA starts from the loaded weights, not from the random ones
        return skipped

    def record_skipped(self, experiment: Experiment, skipped: list[str]) -> None:
        """With `skip_mismatch`: says and records (run.json's `fine_tuned_from`) the weights left as the new model
        made them; nothing without it.

        Args:
            experiment: the new run's `Experiment`.
            skipped: `load_into`'s list.

        Example:

        ```python
        weights.record_skipped(experiment, weights.load_into(model, settings))
        ```
        """
        if not self.skip_mismatch:
            return
        _LOG.info("%s: %d weight%s of the new model left as it made them%s", SKIP_MISMATCH_OPTION, len(skipped),
                  "" if len(skipped) == 1 else "s", "".join(f"\n  {line}" for line in skipped))
        experiment.record.fine_tuned_from({**self.as_json(), SKIPPED_KEY: skipped})
