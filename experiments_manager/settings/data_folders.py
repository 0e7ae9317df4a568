"""The settings' data folders as the original framework found them: also from the run's folder.

The original framework ran each experiment with its run folder (the session folder) as the current folder, so its
settings name data relative to it: `raw_data_dir_train = "../../../../../datasamples/timeseries/"` climbs from
`<workingFolder>/<run>/` to the data. The engine never changes the current folder; instead, a relative
`raw_data_dir_train`, `raw_data_dir_val` or `raw_data_dir_test` that does not exist from the current folder but does
from the run's folder is given to `get_input_pipeline` as that path (absolute, a trailing `/` kept), with one info
line saying so. One found nowhere is given as written (a pipeline may not read it: generated data); should the
pipeline then fail, its one error line lists both places tried (`failed_line`).

Before a new run's folder exists (the dry build), its place is `<workingFolder>/<new run>`: a path climbing out of it
(`../...`) resolves the same.

Example:

```python
folder = data_folder(settings, "train_dir", run_folder=experiment.root)
returned = folder.pipeline_of(settings, training=True)   # get_input_pipeline(folder.used, True, ...)
```
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from experiments_manager.settings.loader import Settings

_LOG = logging.getLogger(__name__)
NEW_RUN = "<new run>"  # the place of a run folder not made yet, below the working folder


@dataclasses.dataclass(frozen=True)
class DataFolder:
    """One data folder setting as the pipeline receives it.

    Args:
        setting: the settings file's name for it (`raw_data_dir_train`).
        given: its value, as the settings say.
        used: what `get_input_pipeline` receives (`given`, or the path found from the run's folder).
        tried: the places looked in when it was found nowhere: (from the current folder, from the run's folder);
            () when found, or not a relative path.
    """

    setting: str
    given: Any
    used: Any
    tried: tuple[str, ...] = ()

    def pipeline_of(self, settings: "Settings", training: bool) -> Any:
        """What the settings' `get_input_pipeline` returns for this folder (`used`). When it raises while the
        folder was found nowhere, one line says where it was looked for (`UserInputError`); any other error is
        raised as it is."""
        from experiments_manager.utils.errors import UserInputError

        try:
            return settings.data.get_input_pipeline(self.used, training, settings.training.batch_size,
                                                    settings.training.epochs)
        except UserInputError:
            raise
        except Exception as error:  # noqa: BLE001 - said as the data folder found nowhere, else as it was raised
            line = self.failed_line(settings.path.name, error)
            if line is None:
                raise
            raise UserInputError(line) from None

    def failed_line(self, settings_name: str, error: BaseException) -> Optional[str]:
        """The one line for a pipeline that raised `error` while this folder was found nowhere; else None."""
        if not self.tried:
            return None
        message = str(error).splitlines()[0] if str(error) else ""
        return (f"{settings_name}: get_input_pipeline: {self.setting} = {self.given!r}: expected a folder, found "
                f"neither from the current folder ({self.tried[0]}) nor from the run's folder ({self.tried[1]}), as "
                f"the original framework ran; the pipeline raised {type(error).__name__}: {message}")


def data_folder(settings: "Settings", field: str, run_folder: "Optional[str | Path]" = None) -> DataFolder:
    """The data folder of `settings.data.<field>` ('train_dir', 'val_dir', 'test_dir') as the pipeline gets it.

    Args:
        settings: the loaded settings.
        field: the data section's field.
        run_folder: the run's folder (default None: a new run's, `<workingFolder>/<new run>`).

    Example:

    ```python
    data_folder(settings, "val_dir", experiment.root).used
    ```
    """
    from experiments_manager.settings.sections import user_name

    given = getattr(settings.data, field)
    setting = user_name("data", field)
    if not isinstance(given, str) or not given or os.path.isabs(given) or os.path.exists(given):
        return DataFolder(setting, given, given)
    base = Path(run_folder) if run_folder is not None else Path(settings.experiment.working_folder) / NEW_RUN
    candidate = os.path.normpath(os.path.join(os.path.abspath(base), given))
    if os.path.exists(candidate):
        used = candidate + (os.sep if given.endswith(("/", os.sep)) else "")
        key = (setting, given, used)
        if key not in settings.said:
            settings.said.add(key)
            _LOG.info("%s: %s = %r is not found from the current folder; using it from the run's folder, as the "
                      "original framework ran: %s", settings.path.name, setting, given, used)
        return DataFolder(setting, given, used)
    return DataFolder(setting, given, given, (os.path.abspath(given), candidate))
