"""The sweep folder: `<workingFolder>/<session_name>_sweep_<YYYY-mm-dd--HH-MM-SS>/`.

```
sweep.json            what was swept and how (settings, space, algo, seed, max evals), status, best trial
sweep_settings.py     copy of the settings file as it was when the sweep started
trials.pickle         hyperopt Trials of the finished trials, rewritten after each one (pickle.load gives it back)
results.csv           one row per trial: hparams, status, best value and epoch, seconds, experiment folder
loss_vs_hparams.png   each trial's best value against each swept hparam
trials/<key>.json     each trial's record (experiment folder, pid, status), and <key>.log its output
<session>_<stamp>_<swept hparams>/   each trial's experiment: an ordinary experiment folder
```
With the trials inside, `tensorboard --logdir <sweep folder>` compares them alone, and
`tensorboard --logdir <workingFolder>` compares them with every other run.
"""

import json
from pathlib import Path

from experiments_manager.utils.atomic import copy_atomically, write_json_atomically
from experiments_manager.utils.errors import UserInputError
from experiments_manager.attempts import file_sha256
from experiments_manager.experiment import SWEEP_SPEC_NAME, folder_stamp, make_unique_dir, now

STOP_FILE_NAME = "STOPPING"
SWEEP_STATUSES = ("running", "finished", "failed", "interrupted")


class SweepFolder:
    """One sweep's folder and its sweep.json.

    Args:
        root: the sweep folder.

    Example:

    ```python
    sweep = SweepFolder.open("experiments/examples/curve_fitting/my_test_sweep_2026-11-21--10-00-00")
    sweep.spec()["status"]
    ```
    """

    def __init__(self, root):
        self.root = Path(root)

    @property
    def spec_file(self):
        return self.root / SWEEP_SPEC_NAME

    @property
    def settings_copy(self):
        return self.root / "sweep_settings.py"

    @property
    def trials_file(self):
        return self.root / "trials.pickle"

    @property
    def results_csv(self):
        return self.root / "results.csv"

    @property
    def plot_png(self):
        return self.root / "loss_vs_hparams.png"

    @property
    def trials_dir(self):
        return self.root / "trials"

    @property
    def stop_file(self):
        """Present while the sweep is stopping: trials not started yet do not start."""
        return self.root / STOP_FILE_NAME

    @classmethod
    def create(cls, settings, spec):
        """A new dated sweep folder in the settings' workingFolder, with sweep.json and a copy of the settings."""
        parent = Path(settings.experiment.working_folder)
        parent.mkdir(parents=True, exist_ok=True)
        sweep = cls(make_unique_dir(parent, f"{settings.experiment.session_name}_sweep_{folder_stamp()}".lstrip("_")))
        copy_atomically(settings.path, sweep.settings_copy)
        sweep.write_spec({**spec, "settings_sha256": file_sha256(settings.path),
                          "model_sha256": file_sha256(settings.model_file), "created": now(),
                          "status": "running", "trials_done": 0, "best": None})
        return sweep

    @classmethod
    def open(cls, root):
        sweep = cls(root)
        if not sweep.spec_file.is_file():
            raise UserInputError(f"{root}: not a sweep folder (no {SWEEP_SPEC_NAME})")
        return sweep

    def spec(self):
        try:
            return json.loads(self.spec_file.read_text())
        except (OSError, ValueError) as error:
            raise UserInputError(f"{self.spec_file}: expected a JSON object: {error}") from None

    def write_spec(self, spec):
        write_json_atomically(self.spec_file, spec)

    def update_spec(self, **fields):
        if "status" in fields and fields["status"] not in SWEEP_STATUSES:
            raise ValueError(f"unknown sweep status {fields['status']!r}")
        spec = self.spec()
        spec.update(fields)
        self.write_spec(spec)
        return spec
