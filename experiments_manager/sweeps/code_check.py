"""A resumed sweep trains its next trials with the code it started with, or says it changed.

The code of a sweep: its settings file and model file (their SHA-256 in sweep.json), and the user's own modules its
trials imported (each trial's experiment records them in run.json's `attempts`, see `run/attempts.py`). `sweep
--resume` compares them with the files now and refuses a change in one line unless `--accept-code-change`; then
sweep.json records the accepted code, and the trials the sweep resumes trust its check.

Example:

```python
changes = sweep_code_changes(sweep_folder, spec)   # ['/home/me/activations.py (changed)']
```
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, cast

from experiments_manager.run.attempts import code_changes, file_sha256
from experiments_manager.run.discovery import read_run_info
from experiments_manager.run.experiment import RUN_FILE_NAME, Experiment

if TYPE_CHECKING:
    from experiments_manager.run.record import RunRecord
    from experiments_manager.sweeps.spec_writer import SweepSpec
    from experiments_manager.utils.atomic import PathLike


def recorded_code(sweep_root: PathLike, spec: SweepSpec) -> dict[str, Optional[str]]:
    """{absolute file: SHA-256} of the code the sweep's trials ran: the settings and model files, the user's modules
    of each trial's latest attempt (the newest trial's wins), then what a resume accepted (sweep.json's `code`)."""
    code: dict[str, Optional[str]] = {}
    runs: list[RunRecord] = []
    for run_file in Path(sweep_root).glob(f"*/{RUN_FILE_NAME}"):
        info = read_run_info(Experiment(run_file.parent))  # checked; a damaged one is a stand-in without attempts
        if "status" in info:  # (a damaged trial's record: its code is not known)
            runs.append(info)
    for info in sorted(runs, key=lambda info: str(info.get("started") or "")):
        for attempt in info.get("attempts") or []:
            code.update({path: digest for path, digest in (attempt.get("code") or {}).items()
                         if Path(path).is_absolute()})
    for name, key in (("settings_file", "settings_sha256"), ("model_file", "model_sha256")):
        if spec.get(name) and spec.get(key):
            code[cast(str, spec.get(name))] = cast(Optional[str], spec.get(key))  # (a TypedDict read by a key's name)
    code.update(spec.get("code") or {})
    return code


def sweep_code_changes(sweep_root: PathLike, spec: SweepSpec) -> list[str]:
    """The files of the sweep's code (`recorded_code`) that are not what its trials ran: 'PATH (changed)'."""
    return code_changes(recorded_code(sweep_root, spec), sweep_root)


def accepted_code(sweep_root: PathLike, spec: SweepSpec) -> dict[str, Optional[str]]:
    """sweep.json's `code` after a resume accepted a change: every file of the sweep's code as it is now (one that
    cannot be read keeps what was recorded: a gone file is not a change)."""
    return {path: file_sha256(path) or digest for path, digest in recorded_code(sweep_root, spec).items()}
