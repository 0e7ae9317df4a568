"""Exports: a run's versions as SavedModels in TF Serving's layout, written atomically.

Modules: `exporter` (the `Exporter`: which version, when, the folders written whole and verified), `template` (the
graph of a run's first version, reused to write the next ones from the values alone), `background_export` (those writes on a
background thread, one version in flight), `lean_save` (versions hold the model's weights, not its
optimizers nor its layers' own functions), `keras_weights` (each version's Keras weights file, what a rebuilt model reads by Keras' own
`load_weights`), `saved_state` (a version's saved objects matched to a live module, and read back into a rebuilt
model: `em.load`, `evaluate`, `--init-from`), `lookup_tables` (its vocabularies compared with the rebuilt model's). The
names of the folders and of models.config are `run/served_layout.py`'s, shared with the servers.

Example:

```python
from experiments_manager.export import Exporter

exporter = Exporter(experiment, settings, model, in_background=True)
exporter.export(epochs_completed=3, value=0.0123, best=True)
```
"""

from experiments_manager.export.exporter import (Exporter, check_signatures, ema_weights_swapped_in,
                                                  write_models_config)

__all__ = ["Exporter", "check_signatures", "ema_weights_swapped_in", "write_models_config"]
