"""A sweep resumed or joined is "run again in the same folder": the folder's sweep.json and what was asked make one
plan, decided here without reading or writing anything (pure: unit-tested in milliseconds, as a run's
`run/resume_plan.py`); `driver.run_sweep` reads the folder's facts (`SweepFacts`), asks for the plan and carries
it out. Every refusal is one line naming the option, the sweep and what was expected, before anything is written.

- `resumed_spec`: `sweep --resume SWEEP`: the sweep keeps its choices; a resume may raise `--max-evals` (not below
  the trials done), `--max-epochs` (a scheduler's last rung), and choose how its workers start (`--parallelism`,
  `--spark-master`, `--workers`) and `--mlflow`.
- `joined_spec`: `sweep -u SETTINGS --join NAME` when the folder exists: the options this process gives must agree
  with the sweep's; those it leaves out are the sweep's; a larger `--max-evals` raises the total.
- `code_decision`: the sweep's code compared with the files now: a change refused unless `--accept-code-change`.

Example:

```python
spec = resumed_spec(folder.spec(), request, SweepFacts(settings_file_exists=True))
spec = code_decision(spec, changes, request.accept_code_change, shown=str(folder.root), accepted=lambda: {...})
```
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from experiments_manager.run.attempts import ACCEPT_CODE_CHANGE_FLAG
from experiments_manager.sweeps.scheduler import describe, raised_max_epochs
from experiments_manager.utils.errors import UserInputError

if TYPE_CHECKING:
    from experiments_manager.sweeps.request import SweepRequest
    from experiments_manager.sweeps.spec_writer import SweepSpec


@dataclasses.dataclass(frozen=True)
class SweepFacts:
    """What the folder and the machine say of a sweep being resumed (read by `driver.run_sweep`).

    Args:
        settings_file_exists: the settings file sweep.json names is a file.
        older_engine_running: an older engine's sweep (no lease) still runs it: its pid alive on this host.
    """

    settings_file_exists: bool = True
    older_engine_running: bool = False


def resumed_spec(spec: SweepSpec, request: SweepRequest, facts: SweepFacts) -> SweepSpec:
    """sweep.json's choices, with the few a resume may change (more trials, a higher last rung, how its workers
    start, the tracking server); refused in one line when the request or the folder does not allow the resume."""
    fixed_flags = [flag for flag, value in (("--algo", request.algo), ("--seed", request.seed),
                                            ("--hparam", request.hparams), ("--scheduler", request.scheduler),
                                            ("--eta", request.eta), ("--min-epochs", request.min_epochs),
                                            ("--startup-trials", request.startup_trials)) if value]
    if fixed_flags:
        raise UserInputError(f"{', '.join(fixed_flags)}: not accepted with --resume (the sweep keeps its own)")
    if facts.older_engine_running:  # a sweep of an older engine, which took no lease (this host's pids only)
        raise UserInputError(f"{request.resume}: the sweep is still running (pid {spec.get('pid')}); stop it first")
    if not facts.settings_file_exists:
        raise UserInputError(f"{request.resume}: sweep.json: settings_file: {spec.get('settings_file')!r} "
                             "not found (the sweep trains from it)")
    if request.max_evals is not None and request.max_evals < spec.get("trials_done", 0):
        raise UserInputError(f"--max-evals: expected at least the {spec['trials_done']} trials already done, "
                             f"got {request.max_evals}")
    return {**spec,
            "scheduler": raised_max_epochs(spec.get("scheduler"), request.max_epochs),
            "max_evals": request.max_evals or spec["max_evals"],
            "parallelism": request.parallelism or (1 if request.workers else spec.get("parallelism", 1)),
            "spark_master": request.spark_master or spec.get("spark_master"),
            "mlflow_tracking_uri": request.tracking_uri() or spec.get("mlflow_tracking_uri")}


def joined_spec(spec: SweepSpec, mine: SweepSpec, request: SweepRequest, shown: str) -> SweepSpec:
    """The spec of the sweep this process joins (`--join`), from the sweep's (`spec`) and the one this process would
    have made (`mine`); refused, one line per option, when an option this process gives disagrees."""
    problems: list[str] = []
    if Path(spec.get("settings_file", "")).resolve() != Path(mine["settings_file"]).resolve():
        problems.append(f"-u: the sweep trains {spec.get('settings_file')}, this process names {mine['settings_file']}")
    if request.hparams and spec.get("fixed_hparams") != mine["fixed_hparams"]:
        problems.append(f"--hparam: the sweep fixes {hparams_text(spec.get('fixed_hparams'))}, this process "
                        f"{hparams_text(mine['fixed_hparams'])}")
    for flag, key, value in (("--algo", "algo", request.algo), ("--seed", "seed", request.seed),
                             ("--startup-trials", "startup_trials", request.startup_trials)):
        if value is not None and value != spec.get(key):
            problems.append(f"{flag}: the sweep has {spec.get(key)}, this process {value}")
    if (request.scheduler is not None or request.eta is not None or request.min_epochs is not None
            or request.max_epochs is not None) and mine.get("scheduler") != spec.get("scheduler"):
        problems.append(f"--scheduler: the sweep has {describe(spec.get('scheduler'))}, this process "
                        f"{describe(mine.get('scheduler'))}")
    if request.mlflow is not None and mine.get("mlflow_tracking_uri") != spec.get("mlflow_tracking_uri"):
        problems.append(f"--mlflow: the sweep logs to {spec.get('mlflow_tracking_uri')}, this process to "
                        f"{mine.get('mlflow_tracking_uri')}")
    if problems:
        raise UserInputError([f"--join {request.join}: {shown}: {problem} (leave the option out to take the "
                              "sweep's)" for problem in problems])
    return {**spec, "max_evals": max(spec["max_evals"], request.max_evals or 0),
            "parallelism": request.parallelism or 1, "spark_master": request.spark_master}  # how this one starts


def code_decision(spec: SweepSpec, changes: list[str], accept: bool, shown: str, settings_copy: Path,
                  accepted: Callable[[], dict[str, Optional[str]]]) -> SweepSpec:
    """sweep.json's spec after the sweep's code was compared with the files now (`changes`: 'PATH (changed)'
    lines): a change refused in one line unless `accept`; then the spec records `accepted()` (every file of the
    sweep's code as it is now)."""
    if changes and not accept:
        raise UserInputError(f"{shown}: the code changed since the sweep's trials ran: "
                             f"{', '.join(changes)}; put it back, or resume with {ACCEPT_CODE_CHANGE_FLAG} "
                             f"(new trials then train with it; the original settings are {settings_copy})")
    return {**spec, "code": accepted()} if changes else spec


def join_name(name: Optional[str]) -> Optional[str]:
    """`--join NAME` checked: a plain name (it names a folder), or None."""
    if name is None:
        return None
    if not name or "/" in name or name.startswith(".") or len(name) > 100:
        raise UserInputError(f"--join: expected a plain name (letters, digits, - and _, e.g. the array's job id), "
                             f"got {name!r}")
    return name


def check_fixed_hparams(fixed: dict[str, Any], swept: list[str], file_name: str) -> None:
    """A fixed `--hparam` that the space also sweeps is refused in one line."""
    from experiments_manager.settings.overrides import split_new_hparams

    both = sorted(set(split_new_hparams(fixed)[0]) & set(swept))
    if both:
        raise UserInputError(f"--hparam {', '.join(both)}: also in {file_name}'s hyperopt_space "
                             "(a swept hparam cannot be fixed; drop one)")


def hparams_text(hparams: Optional[dict[str, Any]]) -> str:
    return " ".join(f"{name}={value!r}" for name, value in (hparams or {}).items()) or "none"
