"""`experiments-manager check RUN`: verifies a run folder and repairs what can be derived from its records.

What it reads, one line each: run.json; every checkpoint against its recorded checksums (`checkpointing.verify`);
every version against its `checksums.sha256`; history.csv's rows (`HistoryCSV.examine`); train.log. What it
repairs, under the run's lease (a live run is reported, not touched): history.csv, torn by a power loss or cut
short, is rebuilt from the newest good checkpoint's copy of it when that holds more epochs, else cut to its whole
rows. Damaged checkpoints and versions are not derivable: they are named, and `train --resume` sets them aside.
A lost train.log (empty after a power loss) is named too: it was a copy of the console.

Example:

```python
report = check_run("experiments/curve_fitting/my_run", ["experiments-manager", "check", "..."])
print("\\n".join(report.lines)); report.exit_code   # 0: sound or repaired, 1: damage remains
```
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

from experiments_manager.run.experiment import Experiment
from experiments_manager.run import lifecycle
from experiments_manager.utils.checksums import verify_manifest
from experiments_manager.utils.command_name import command_name
from experiments_manager.utils.lease import LeaseHeld

NUL = b"\0"


@dataclasses.dataclass
class CheckReport:
    """What `check_run` found: one line per part, and whether damage remains (exit code 1) or not (0)."""

    lines: list[str]
    damage_remains: bool = False

    @property
    def exit_code(self) -> int:
        return 1 if self.damage_remains else 0


def check_run(root: str | Path, command: Sequence[str], repair: bool = True) -> CheckReport:
    """Verifies the run folder `root` and (with `repair`) rebuilds what its records can give back.

    Args:
        root: the experiment folder.
        command: this process' command line (recorded in the lease while it repairs).
        repair: rewrite a damaged history.csv (default True); False only reports.

    Raises:
        UserInputError: `root` is no experiment folder, or its run.json cannot be read (one line, exit 2; a storage
            failure: exit 75).
    """
    from experiments_manager.callbacks.history_csv import HistoryCSV
    from experiments_manager.run.checkpointing import STATE_FILE, Checkpointer

    experiment = Experiment.open(root)
    info = experiment.run_info()
    epochs = int(info.get("epochs_completed") or 0)
    report = CheckReport([f"run.json: readable ({info.get('status')}, {epochs} epoch(s) completed)"])

    checkpoints = Checkpointer(experiment.checkpoints_dir).examined()
    damaged = [f"{path.name} ({problem})" for path, problem in checkpoints if problem]
    sound = [path for path, problem in checkpoints if problem is None]
    report.lines.append(f"checkpoints: {len(checkpoints) - len(damaged)} sound"
                        + (f"; damaged: {', '.join(damaged)}" if damaged else ""))
    versions = sorted((path for path in experiment.export_dir.iterdir() if path.name.isdigit()),
                      key=lambda path: int(path.name)) if experiment.export_dir.is_dir() else []
    broken = [f"{path.name} ({problem})" for path in versions for problem in [verify_manifest(path)] if problem]
    report.lines.append(f"versions: {len(versions) - len(broken)} sound"
                        + (f"; damaged: {', '.join(broken)}" if broken else ""))
    if damaged or broken:
        report.damage_remains = True
        report.lines.append(f"`{command_name()} train --resume {root}` sets the damaged ones aside")

    history = HistoryCSV(experiment.history_csv)
    header, rows, bad = history.examine()
    if bad == 0 and len(rows) >= epochs:
        report.lines.append(f"history.csv: sound ({len(rows)} row(s))")
    else:
        what = "no usable header" if bad is None else (f"{bad} damaged row(s)" if bad else
                                                      f"{len(rows)} row(s) for {epochs} epoch(s)")
        # the newest sound checkpoint's state (verified above: not hashed again)
        state = json.loads((sound[-1] / STATE_FILE).read_text()) if sound else {}
        saved = state.get("callbacks", {}).get("history")
        from_checkpoint = bool(saved and saved.get("header") and len(saved.get("rows") or []) > len(rows))
        source = (f"rebuilt from the newest sound checkpoint ({len(saved['rows'])} row(s))" if from_checkpoint
                  else f"cut to its {len(rows)} whole row(s)")
        if not repair:
            report.lines.append(f"history.csv: {what}: not repaired (--no-repair)")
            report.damage_remains = True
        else:
            try:
                with lifecycle.attempt(experiment, command, console=False, records_ending=False):
                    history.set_state(saved if from_checkpoint else {"header": header or ["epoch"], "rows": rows})
                report.lines.append(f"history.csv: {what}: {source}")
            except LeaseHeld as held:
                report.lines.append(f"history.csv: {what}: not repaired, the run is being written ({held})")
                report.damage_remains = True

    log = experiment.root / "train.log"
    content = log.read_bytes() if log.is_file() else b""
    if not content and info.get("attempts"):
        report.lines.append("train.log: empty (lost, as after a power loss): a copy of the console, not derivable")
    elif NUL in content:
        report.lines.append(f"train.log: {content.count(NUL)} NUL byte(s) (a power loss): kept as it is")
    else:
        report.lines.append(f"train.log: readable ({len(content.splitlines())} line(s))")
    return report
