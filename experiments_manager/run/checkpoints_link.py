"""A run's checkpoints on other storage: `checkpoints/` a link the engine made, the one link a writer follows.

Checkpoints are large and rewritten every epoch; a lab keeps them on scratch storage and the rest of a run where it
is backed up. The settings' `checkpoints_folder` asks for it: a new run's checkpoints go to
`<checkpoints_folder>/<the run folder's name>/` (`_1`, `_2`... when taken) and `RUN/checkpoints` is a link there,
recorded in run.json as `checkpoints_link`. A folder is data otherwise (`utils/links.py`: nothing is written through
a link it holds): this link is followed only while it leads where run.json says, and its place is there. The place
holds `OWNER_MARKER`, the run folder's absolute path: `prune` deletes a place only when it names the run it prunes
(a copy of the run, or a folder someone made to look like one, is not that run) and the place is the user's.

Example:

```python
place = link_checkpoints(run / "checkpoints", Path("/scratch/me/checkpoints"))   # /scratch/me/checkpoints/<run>
refuse_links(run, own_links(run / "checkpoints", {"checkpoints_link": str(place)}))   # nothing: the run's own link
```
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from experiments_manager.run.names import make_unique_dir
from experiments_manager.utils.atomic import fsync_folder, write_text_atomically
from experiments_manager.utils.command_name import command_name
from experiments_manager.utils.errors import UserInputError
from experiments_manager.utils.links import first_link_inside, refuse_link


OWNER_MARKER = ".experiments_manager_run"  # in the place: the absolute path of the run whose checkpoints it holds


def link_checkpoints(link: Path, folder: Path) -> Path:
    """Makes `<folder>/<the run folder's name>/` and `link` (the run's `checkpoints/`) a link to it, both durably.

    Args:
        link: the run's `checkpoints/` (not there yet).
        folder: the settings' `checkpoints_folder` (`~` expanded; made when missing).

    Returns:
        the place the checkpoints go (absolute): what run.json records as `checkpoints_link`.
    """
    parent = Path(os.path.abspath(folder.expanduser()))
    parent.mkdir(parents=True, exist_ok=True)
    place = make_unique_dir(parent, link.parent.name)
    fsync_folder(parent)
    try:
        write_text_atomically(place / OWNER_MARKER, str(link.parent.resolve()) + "\n")
        os.symlink(place, link)
    except BaseException:  # (a file system without links): nothing left of it
        shutil.rmtree(place, ignore_errors=True)
        raise
    fsync_folder(link.parent)
    return place


def own_links(link: Path, info: Mapping[str, Any]) -> dict[Path, str]:
    """{the run's `checkpoints/`: its recorded place} when run.json (`info`) records `checkpoints_link`, else {}.

    Args:
        link: the run's `checkpoints/`.
        info: its run.json.
    """
    place = info.get("checkpoints_link")
    return {link: place} if isinstance(place, str) else {}


def refuse_links(root: Path, own: Mapping[Path, str]) -> None:
    """One line naming a symbolic link in the run's folder other than its `own` (or its own leading elsewhere): what
    every writer checks first.

    Args:
        root: the run's folder.
        own: `own_links`.

    Raises:
        UserInputError: such a link.
    """
    refuse_link(first_link_inside(root, own))


def refuse_lost_checkpoints(link: Path, root: Path) -> None:
    """What a resume checks before it reads its checkpoints: `checkpoints/` a link whose place is gone (the scratch
    storage purged it) is one line, instead of a resume from the first epoch over the run's versions.

    Args:
        link: the run's `checkpoints/`.
        root: the run's folder.

    Raises:
        UserInputError: the link leads nowhere.
    """
    if link.is_symlink() and not link.exists():
        raise UserInputError(f"{link}: leads to {os.readlink(link)}, which is gone (scratch storage purged?): the "
                             f"run's checkpoints are lost; train on from its best version with: {command_name()} "
                             f"train -u SETTINGS --init-from {root}")
