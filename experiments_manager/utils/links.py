"""Symbolic links inside a folder the tool writes: a folder is data, and nothing is written through a link it holds.

A run's folder may come from someone else (a colleague's, on a shared file system) or be changed after the run:
`train.log` made a link to a file elsewhere would have a resume append to that file. The tool makes no links in
the folders it writes but one the user asked for (`checkpoints/` to the settings' `checkpoints_folder`, recorded in
run.json), so a writer refuses a folder holding any other, naming it, before it writes anything.

This module does not import TensorFlow.

Example:

```python
refuse_link(first_link_inside(run_folder))   # one line naming the first link, or nothing
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Union

from experiments_manager.utils.errors import UserInputError


def first_link_inside(folder: Union[str, Path], own: Optional[Mapping[Path, str]] = None) -> Optional[Path]:
    """The first symbolic link found inside `folder` (a file's or a folder's, at any depth; links are not followed,
    but the folder's `own`), or None. One `scandir` a folder: the entries' types come with their names on most file
    systems.

    Args:
        folder: the folder to look through (itself may be a link: its place is the user's to choose).
        own: {link: the place it must lead to} of the links the engine made there and writes through (a run's
            `checkpoints/` to its `checkpoints_link`, `Experiment.own_links`): one leading there is looked through
            as a folder; leading elsewhere, it is the link found (default none).
    """
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return None
    own = own or {}
    for entry in entries:
        if entry.is_symlink() and own.get(Path(entry.path)) != os.readlink(entry.path):
            return Path(entry.path)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) or (entry.is_symlink() and Path(entry.path) in own):
            found = first_link_inside(entry.path)
            if found is not None:
                return found
    return None


def first_link_at_or_below(path: Union[str, Path]) -> Optional[Path]:
    """`path` itself when it is a symbolic link, else the first link inside it (`first_link_inside`), or None: what
    a writer of that one folder (`evaluate`'s `RUN/evaluations`) checks.

    Args:
        path: the folder written (it may not exist yet).
    """
    return Path(path) if os.path.islink(path) else first_link_inside(path)


def link_refusal(link: Path) -> str:
    """The one line refusing to write a folder holding `link`.

    Args:
        link: the symbolic link found (`first_link_inside`).
    """
    return (f"{link}: a symbolic link (to {os.readlink(link)}) inside the folder: nothing is written through a link "
            "in a run's folder; replace it with a file or folder of its own")


def refuse_link(found: Optional[Path]) -> None:
    """Raises `UserInputError` (`link_refusal`'s line) when a writer's check found a link; nothing when None.

    Args:
        found: what `first_link_inside` or `first_link_at_or_below` returned.
    """
    if found is not None:
        raise UserInputError(link_refusal(found))
