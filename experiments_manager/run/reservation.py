"""A new run's experiment folder, named and created before its settings file is executed.

Executing a settings file imports TensorFlow (seconds). The command line reads the file's literal `workingFolder`
and `session_name` first (an AST pass; nothing runs), creates the dated folder and says where the run goes at
once. The folder holds only a `.starting` marker until `Experiment.create` claims it; a run that stops before then
(a broken settings file) removes it, and one killed meanwhile leaves a marker that the next run's reservation in
the same working folder removes with its folder.

Example:

```python
reservation = FolderReservation.reserve("examples/regression/mysettings_curve_fitting.py", {"nbEpoch": 3})
try:
    ...                               # load the settings, check them
    experiment = Experiment.create(settings, command, reservation=reservation)
finally:
    if reservation is not None:
        reservation.release()         # a no-op once claimed
```
"""

from __future__ import annotations

import ast
import collections
import contextlib
import datetime
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, cast

from experiments_manager.run.experiment import STARTING_MARKER_NAME as MARKER_NAME
from experiments_manager.run.names import folder_name, folder_stamp, make_unique_dir
from experiments_manager.utils.signals import process_alive

if TYPE_CHECKING:
    from experiments_manager.utils.atomic import PathLike

NOT_LITERAL = object()  # a settings name bound to something computed
_LOG = logging.getLogger(__name__)


class FolderReservation:
    """An experiment folder created ahead of its run.

    Args:
        root: the created folder (holding only the marker).
        base: its name without the repeat suffix (`folder_name` of the file's names, the moment and the overrides).
        moment: the run's start (its folder's stamp and run.json's `started`).
        created_parent: the working folder when this reservation created it (removed again on release when empty).
    """

    def __init__(self, root: PathLike, base: str, moment: datetime.datetime,
                 created_parent: Optional[Path] = None) -> None:
        self.root = Path(root)
        self.base = base
        self.moment = moment
        self.created_parent = created_parent
        self.claimed = False

    @classmethod
    def reserve(cls, settings_file: PathLike, overrides: Mapping[str, Any]) -> Optional[FolderReservation]:
        """Creates the folder a new run of `settings_file` with `overrides` goes to; None when the file does not
        name it literally (a computed `workingFolder`: the folder is created later, as without a reservation)."""
        names = literal_assignments(settings_file, ("workingFolder", "session_name", "enable_federated_learning"))
        if not (isinstance(names.get("workingFolder"), str) and isinstance(names.get("session_name"), str)
                and names.get("enable_federated_learning", False) is False):
            return None  # a federation names its own folder
        parent = Path(cast(str, names["workingFolder"]))
        created_parent = None if parent.is_dir() else _first_missing(parent)
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None  # the run reports it, with the settings' name, when it creates the folder
        remove_abandoned(parent)
        moment = datetime.datetime.now()
        base = folder_name(cast(str, names["session_name"]), folder_stamp(moment), overrides)
        root = make_unique_dir(parent, base)
        (root / MARKER_NAME).write_text(f"{socket.gethostname()} {os.getpid()}\n")
        return cls(root, base, moment, created_parent)

    def fits(self, settings: Any, parent: Optional[PathLike] = None) -> bool:
        """True when the loaded `settings` name this folder (in `parent`, default their `workingFolder`)."""
        parent = Path(parent if parent is not None else settings.experiment.working_folder)
        expected = folder_name(settings.experiment.session_name, folder_stamp(self.moment), settings.overrides)
        return not self.claimed and parent.resolve() == self.root.parent.resolve() and expected == self.base

    def claim(self) -> Path:
        """The folder, for `Experiment.create` to fill; the reservation is spent."""
        (self.root / MARKER_NAME).unlink(missing_ok=True)
        self.claimed = True
        return self.root

    def release(self) -> None:
        """Removes the unclaimed folder (and the working folder this reservation created, if empty)."""
        if self.claimed:
            return
        self.claimed = True
        (self.root / MARKER_NAME).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: something else wrote there; leave it
            self.root.rmdir()
            if self.created_parent is not None:
                for folder in [self.root.parent, *self.root.parent.parents]:
                    folder.rmdir()
                    if folder == self.created_parent:
                        break


def literal_assignments(settings_file: PathLike, names: Iterable[str]) -> dict[str, object]:
    """{name: value} for each of `names` bound in the settings file: its literal value when assigned exactly once,
    at the top level, to a constant (str, bool, number); `NOT_LITERAL` when bound otherwise (computed, twice,
    inside an `if`, imported). Nothing runs."""
    try:
        tree = ast.parse(Path(settings_file).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return {}  # the loader reports it, with the file's name
    bound = collections.Counter(node.id for node in ast.walk(tree)
                                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store))
    bound.update(alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                 for alias in node.names)
    literal = {node.targets[0].id: node.value.value for node in tree.body
               if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
               and isinstance(node.value, ast.Constant)}
    return {name: literal[name] if name in literal and bound[name] == 1 else NOT_LITERAL
            for name in names if bound[name]}


def remove_abandoned(parent: PathLike) -> None:
    """Removes the reserved folders in `parent` whose run died before claiming them (this host's dead pids)."""
    host = socket.gethostname()
    for marker in Path(parent).glob(f"*/{MARKER_NAME}"):
        with contextlib.suppress(OSError, ValueError):
            owner_host, pid = marker.read_text().split()
            if owner_host == host and not process_alive(int(pid)):
                marker.unlink()
                marker.parent.rmdir()
                _LOG.info("Removed %s: its run stopped before it started training", marker.parent)


def _first_missing(path: Path) -> Path:
    """The outermost folder of `path` that does not exist yet."""
    missing = path
    for folder in path.parents:
        if folder.is_dir():
            break
        missing = folder
    return missing
