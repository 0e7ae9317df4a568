"""The settings' own input pipeline: `get_input_pipeline` called as the original framework called it, as a
`Pipeline` (keras2/pipelines.py). Below both readers of training data: `training/inputs.py` (the trainer's input object) and
`kafka/producer.py` (`kafka-produce` sends what it yields), so neither imports the other.

Example:

```python
train = settings_pipeline(settings, training=True)
val = settings_pipeline(settings, training=False)
```
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from experiments_manager.keras2.pipelines import Pipeline
    from experiments_manager.settings.loader import Settings


class DataPartition:
    """A federated client's share of the data: client `index` of `count` (Flower's partition-id/num-partitions).

    The settings see `index` as `hparams['procID']`; a settings file may also define
    `get_client_partition(dataset, client_id, num_clients, isTraining)` returning
    the client's part of a pipeline.
    """

    def __init__(self, index: int, count: int) -> None:
        self.index = index
        self.count = count


def settings_pipeline(settings: Settings, training: bool, partition: Optional[DataPartition] = None,
                      seed: int = 0, run_folder: "Optional[str | Path]" = None) -> Pipeline:
    """The settings' training or validation `Pipeline` (a federated client's part of it, given its `partition`);
    its data folder found as the original framework found it, also from `run_folder` (`settings/data_folders.py`;
    default None: a new run's)."""
    from experiments_manager.keras2.pipelines import as_pipeline
    from experiments_manager.settings.data_folders import data_folder

    returned = data_folder(settings, "train_dir" if training else "val_dir", run_folder).pipeline_of(settings, training)
    if partition is not None and settings.federated.get_client_partition is not None:
        returned = settings.federated.get_client_partition(returned, partition.index, partition.count, training)
    return as_pipeline(returned, settings, training, seed)
