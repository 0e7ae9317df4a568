"""Whose code a folder runs: loading a run or a sweep executes the copies of its settings and model files, so a
folder whose code another user owns is loaded only when the user says they trust it.

A run's folder is data except for two files: its copies of the settings file and of the model file, which every
command that rebuilds its model (`evaluate`, `em.load`, `export`, `predict`, `train --resume`, `--init-from`)
executes. Whoever can write them chooses what those commands run. The hashes in run.json tell a damaged copy from
the one that trained, not who wrote it: a colleague (or anyone who can write their folder on the shared file system)
rewrites a copy and its hash together. As Keras' `safe_mode` refuses a saved lambda unless told otherwise, a folder
whose code another user owns is refused in one line unless `--trust-code` (Python: `trust_code=True`) is given.
The owner is the file's, not the machine's: a run trained on a compute node and read on the login node by the same
user is that user's. See docs/explanation/security.md.

This module does not import TensorFlow.

Example:

```python
refuse_foreign_code(run_root, [run_root / "run.json", run_root / "mysettings.py"], trusted=False)
```
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from experiments_manager.utils.errors import UserInputError

TRUST_CODE_OPTION = "--trust-code"
"""The command-line flag that loads a folder whose code another user owns (Python: `trust_code=True`)."""


def user_name(uid: int) -> str:
    """The login name of `uid`, or 'uid N' when the system knows none (a cluster's user unknown here)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def foreign_owners(paths: Iterable[Path], uid: Optional[int] = None) -> dict[Path, int]:
    """{path: owner} of the `paths` that exist and that another user than `uid` owns (default: this process' user):
    the entry itself (a link) and what it leads to are both looked at.

    Args:
        paths: the files (and folders) whose owner decides.
        uid: the user loading them (default None: `os.geteuid()`).
    """
    me = os.geteuid() if uid is None else uid
    found: dict[Path, int] = {}
    for path in paths:
        for follow in (False, True):
            try:
                owner = os.stat(path, follow_symlinks=follow).st_uid
            except OSError:
                continue  # gone, or a dangling link: its reader says so
            if owner != me:
                found.setdefault(path, owner)
    return found


def foreign_code_problem(root: Path, code_files: Iterable[Path], uid: Optional[int] = None) -> Optional[str]:
    """One line when another user owns the folder `root` or one of its `code_files` (the copies a load executes,
    and the record naming them), else None.

    Args:
        root: the run's or the sweep's folder.
        code_files: the files whose content a load executes or that choose it (run.json, the copies).
        uid: the loading user (default None: this process').

    Example:

    ```python
    foreign_code_problem(Path("/shared/alice/run1"), [Path("/shared/alice/run1/mysettings.py")])
    # '/shared/alice/run1: its code (mysettings.py) belongs to alice, not to you (bob): loading the run runs it; ...'
    ```
    """
    files = list(code_files)
    others = foreign_owners([root, *files], uid)
    if not others:
        return None
    me = os.geteuid() if uid is None else uid
    owners = ", ".join(sorted({user_name(owner) for owner in others.values()}))
    named = sorted({path.name for path in others if path != root} or {path.name for path in files})
    return (f"{root}: its code ({', '.join(named)}) belongs to {owners}, not to you ({user_name(me)}): loading it "
            f"runs that code; if you trust it, add {TRUST_CODE_OPTION} (Python: trust_code=True); see "
            "docs/explanation/security.md")


def refuse_foreign_code(root: Path, code_files: Iterable[Path], trusted: bool) -> None:
    """Raises `foreign_code_problem`'s line as a `UserInputError` (exit 2), unless `trusted` (`--trust-code`)."""
    problem = None if trusted else foreign_code_problem(root, code_files)
    if problem:
        raise UserInputError(problem)
