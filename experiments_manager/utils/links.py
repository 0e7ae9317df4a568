"""Symbolic links inside a folder the tool writes: a folder is data, and nothing is written through a link it holds.

A run's folder may come from someone else (a colleague's, on a shared file system) or be changed after the run:
`train.log` made a link to a file elsewhere would have a resume append to that file. The tool makes no links in
the folders it writes, so a writer refuses a folder holding one, naming it, before it writes anything.

This module does not import TensorFlow.

Example:

```python
link = first_link_inside(run_folder)
if link is not None:
    raise UserInputError(link_refusal(link))
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union


def first_link_inside(folder: Union[str, Path]) -> Optional[Path]:
    """The first symbolic link found inside `folder` (a file's or a folder's, at any depth; links are not followed),
    or None.

    Args:
        folder: the folder to look through (itself may be a link: its place is the user's to choose).
    """
    for parent, folders, files in os.walk(folder):
        for name in sorted([*folders, *files]):
            if os.path.islink(os.path.join(parent, name)):
                return Path(parent) / name
    return None


def link_refusal(link: Path) -> str:
    """The one line refusing to write a folder holding `link`."""
    return (f"{link}: a symbolic link (to {os.readlink(link)}) inside the folder: nothing is written through a link "
            "in a run's folder; replace it with a file or folder of its own")
