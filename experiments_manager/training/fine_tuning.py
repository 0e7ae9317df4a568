"""Fine-tuning: a new run that starts from the weights of another run's exported version.

`train SETTINGS --init-from RUN[:VERSION]` (`em.train(..., init_from=RUN)`) builds the new run's model from its own
settings, then loads into it the weights a version of RUN holds: the best version by default (the one holding the
run's best epoch), or VERSION. A version holds the EMA weights (what the run validated, exported and served), so
those are what the new run starts from; the optimizer (its moments, its step count, the EMA averages) starts
fresh. A new model of the source's architecture reads the version whole, as `em.load` does
(`training/version_reading.py`): its weights, the lookup tables its checkpoint holds, and the vocabularies of its
lookup layers. A model of another architecture (a functional probe around the encoder a SimCLR subclass holds as
`self.encoder`, a new head) takes the weights of the blocks the two models share by name, wherever they sit, then
weight by weight by order and shape (`block_matching.py`; the source run's model rebuilt from its copies names
them). Refused in one line before any folder is created (the dry build loads them once): a version no block of the
new model shares, and, without `--skip-mismatch`, a new model with weights the version does not give (the first
named).

What was loaded is said in one line, "loaded 12 of 14 weights of the new model from RUN version 3 (EMA): encoder
12/12; left as built: head 2/2", and run.json records it as `fine_tuned_from`: `{"run": "<absolute path>",
"version": N, "weights_loaded": 12, "weights": 14, "blocks": {"encoder": [12, 12], "head": [0, 2]}}`, with
`"skip_mismatch": true, "skipped": ["head/kernel: no block named 'head' in the source", ...]` for the weights left as
the new model made them; a resume that finds no checkpoint loads the same weights again.

Example:

```python
weights = InitialWeights.parse("experiments/curve_fitting/my_test_2026-11-21--10-00-00:3")
weights.record_transfer(experiment, weights.load_into(model, settings))
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

from experiments_manager.training.block_matching import Block, BlockCount, block_counts

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
LOADED_KEY, WEIGHTS_KEY, BLOCKS_KEY = "weights_loaded", "weights", "blocks"  # what the new model took, per block
_BLOCKS_SAID = 8  # blocks named in the log line (a functional model's layers may be hundreds; run.json has all)
_VERSION_SUFFIX = re.compile(r"^(?P<run>.+):(?P<version>\d+)$")


@dataclasses.dataclass(frozen=True)
class InitialWeights:
    """The exported version a new run starts from.

    Args:
        run: the source run's folder (absolute).
        version: the version number.
        skip_mismatch: leave the weights whose shape does not fit the new model as it made them, and list them
            (default False: refuse them, in one line).
        trust_code: rebuild the source run's model from its copies although another user owns them, when the
            blocks of another architecture are matched (`--trust-code`; default False: refused in one line).
    """

    run: Path
    version: int
    skip_mismatch: bool = False
    trust_code: bool = dataclasses.field(default=False, compare=False)

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
    def parse(cls, spec: PathLike, skip_mismatch: bool = False, trust_code: bool = False) -> "InitialWeights":
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
        return cls(experiment.root.resolve(), version, skip_mismatch, trust_code)

    @classmethod
    def recorded(cls, info: RunRecord, trust_code: bool = False) -> Optional["InitialWeights"]:
        """The version run.json's `fine_tuned_from` names, or None (not a fine-tuned run, or a damaged key);
        `trust_code`: the run's own `--trust-code`, for the source's copies too."""
        link = info.get(RUN_INFO_KEY)
        if not isinstance(link, dict) or not isinstance(link.get("run"), str) or not isinstance(link.get("version"),
                                                                                               int):
            return None
        return cls(Path(link["run"]), link["version"], link.get(SKIP_MISMATCH_KEY) is True, trust_code)

    def load_into(self, model: Any, settings: Settings,
                  averages: Optional[WeightAverages] = None) -> WeightTransfer:
        """Reads the version into `model`: whole when it fits (its weights, its checkpointed lookup tables and its
        lookup layers' vocabularies, as `em.load` reads it), else the weights of the blocks the two models share
        (`block_matching`: the source run's model rebuilt from its copies to name them).

        Args:
            model: the new run's built model.
            settings: its `Settings` (its served module maps the version's checkpoint keys to the variables).
            averages: the run's `WeightAverages` (EMA), restarted from the loaded weights (default None: none).

        Returns:
            the `WeightTransfer`: what each top-level block of the new model took.

        Raises:
            UserInputError: the version cannot be read; no weight of the new model is in it; or, without
                `skip_mismatch`, some are not (the first named).
        """
        from experiments_manager.export.keras_weights import WeightsDiffer
        from experiments_manager.export.lookup_tables import VersionMismatch
        from experiments_manager.training.block_matching import keras_block
        from experiments_manager.training.version_reading import read_version_or_mismatch

        where = f"{self.describe()}: {OPTION}"
        try:
            read_version_or_mismatch(self.folder, model, settings, where)
            transfer = WeightTransfer.whole(keras_block(model))
        except WeightsDiffer:  # nothing assigned yet: another architecture, its shared blocks matched
            transfer = self._shared_blocks_into(model, where)
        except VersionMismatch as error:
            raise UserInputError(f"{where}: {error}") from None
        if averages is not None:
            averages.restart(model)  # the EMA starts from the loaded weights, not from the random ones
        return transfer

    def _shared_blocks_into(self, model: Any, where: str) -> WeightTransfer:
        """Loads the weights of the blocks `model` shares with the source run's model (`block_matching`)."""
        from experiments_manager.training.block_matching import keras_block, match_blocks
        from experiments_manager.training.version_loading import version_model

        new = keras_block(model)
        source = keras_block(version_model(Experiment.open(self.run, trust_code=self.trust_code), self.version,
                                           OPTION))
        matching = match_blocks(new, source)
        reasons = matching.reasons
        others = len(reasons) - 1
        more = f" ({others} more weight{'s' if others > 1 else ''} left out)" if others > 0 else ""
        if not matching.shared:
            raise UserInputError(
                f"{where}: expected blocks the new model shares with the version's by name (then their weights by "
                f"order and shape), got none: the new model's blocks: {_top_names(new)}; the version's: "
                f"{_top_names(source)}")
        if not matching.loaded:  # blocks of the same names, none of the same shapes: another architecture
            raise UserInputError(f"{where}: expected weights of the new model's shapes, got none: {reasons[0]}{more}")
        if reasons and not self.skip_mismatch:
            raise UserInputError(f"{where}: {reasons[0]}{more}; to load only the weights that fit (a new head), add "
                                 f"{SKIP_MISMATCH_OPTION}")
        for new_weight, source_weight in matching.pairs:
            new_weight.handle.assign(source_weight.handle.value)
        return WeightTransfer(matching.blocks, tuple(reasons))

    def record_transfer(self, experiment: Experiment, transfer: WeightTransfer) -> None:
        """Says what the new model took (one line; with `skip_mismatch` each weight left as the model made it) and
        records it in run.json's `fine_tuned_from`.

        Args:
            experiment: the new run's `Experiment`.
            transfer: `load_into`'s `WeightTransfer`.

        Example:

        ```python
        weights.record_transfer(experiment, weights.load_into(model, settings))
        ```
        """
        _LOG.info("Fine-tuning: %s; the optimizer starts fresh", transfer.line(self.describe()))
        if transfer.left:
            _LOG.info("%s: %d weight%s of the new model left as it made them%s", SKIP_MISMATCH_OPTION,
                      len(transfer.left), "" if len(transfer.left) == 1 else "s",
                      "".join(f"\n  {line}" for line in transfer.left))
        experiment.record.fine_tuned_from({**self.as_json(), **transfer.as_json()})


@dataclasses.dataclass(frozen=True)
class WeightTransfer:
    """What `--init-from` loaded into the new model.

    Args:
        blocks: per top-level block of the new model holding weights, what it took (`block_matching.BlockCount`).
        left: one phrase per weight left as the new model made it (default none).
    """

    blocks: tuple[BlockCount, ...]
    left: tuple[str, ...] = ()

    @classmethod
    def whole(cls, model: Block) -> "WeightTransfer":
        """Every weight of the model `model` describes, loaded."""
        return cls(block_counts(model, lambda weight: True))

    @property
    def loaded(self) -> int:
        return sum(block.loaded for block in self.blocks)

    @property
    def total(self) -> int:
        return sum(block.total for block in self.blocks)

    def line(self, source: str) -> str:
        """`loaded 12 of 14 weights of the new model from RUN version 3 (EMA): encoder 12/12; left as built: head
        2/2` (at most `_BLOCKS_SAID` blocks each, then how many more)."""
        took = [f"{block.name} {block.loaded}/{block.total}" for block in self.blocks if block.loaded]
        left = [f"{block.name} {block.total - block.loaded}/{block.total}" for block in self.blocks
                if block.loaded < block.total]
        said = f"loaded {self.loaded} of {self.total} weights of the new model from {source} (EMA): {_listed(took)}"
        return said + (f"; left as built: {_listed(left)}" if left else "")

    def as_json(self) -> dict[str, Any]:
        """run.json's record of it, beside `fine_tuned_from`'s run and version."""
        return {LOADED_KEY: self.loaded, WEIGHTS_KEY: self.total,
                BLOCKS_KEY: {block.name: [block.loaded, block.total] for block in self.blocks},
                **({SKIPPED_KEY: list(self.left)} if self.left else {})}


def _listed(entries: list[str]) -> str:
    more = len(entries) - _BLOCKS_SAID
    return ", ".join(entries[:_BLOCKS_SAID]) + (f" and {more} more block{'s' if more > 1 else ''}" if more > 0 else "")


def _top_names(model: Block) -> str:
    names = [child.name for child in model.children if child.all_weights()]
    return ", ".join(names) if names else "none holding weights"
