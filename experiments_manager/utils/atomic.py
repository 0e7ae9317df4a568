"""Writes that a reader never sees half done, and that a power loss does not undo: write to a temporary path,
fsync it, rename it, fsync the folder (a rename alone can reach the disk before the data it names: ext4's delayed
allocation left zero-byte checkpoints behind a power loss).

Every temporary name starts with a dot and carries its writer's pid (`.run.json.<pid>.<random>.tmp`,
`.tmp-<version>-<pid>`, `.tmp-ckpt-<n>-<pid>`, `.deleting-<name>-<pid>`), so what a killed writer left behind is
told apart from what a live one is writing: `remove_leftovers` deletes the former.
"""

import contextlib
import errno
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, Union

from experiments_manager.utils.signals import process_alive

# the temporary names of this package's writers, each with its writer's pid
_LEFTOVER = re.compile(r"^\.(?:.+\.(?P<file_pid>\d+)\.[0-9a-f]{12}\.tmp|tmp-(?:ckpt-|float32-)?\d+-(?P<dir_pid>\d+)"
                       r"|deleting-.+-(?P<deleted_pid>\d+))$")
_OLD_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")  # before the pid was in the name
DELETING_PREFIX = ".deleting-"  # what `hidden_for_removal` renames a doomed file or folder to, before its pid
OLD_TEMPORARY_SECONDS = 600  # such a file this old has no live writer (a write takes seconds)
PathLike = Union[str, "os.PathLike[str]"]


def fsync_file(path: PathLike) -> None:
    """Flushes a file's data to the disk (what a rename that follows must not overtake)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_folder(path: PathLike) -> None:
    """Flushes a folder's entries (a rename, a new file's name) to the disk; a file system that cannot is skipped."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError as error:  # EINVAL: a file system that has no folder fsync (some network ones)
        if error.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(descriptor)


def fsync_tree(path: PathLike) -> None:
    """Flushes every file and folder under `path` (a folder about to be renamed into place), then `path` itself."""
    for folder, _, files in os.walk(path):
        for name in files:
            fsync_file(os.path.join(folder, name))
        fsync_folder(folder)


@contextlib.contextmanager
def replaced_atomically(path: PathLike, before_commit: Callable[[], None] = lambda: None) -> Iterator[Path]:
    """Yields a temporary path next to `path`; on success fsyncs it, renames it over `path` and fsyncs the folder.

    The temporary file is removed when the block raises, so nothing
    half-written is left behind; once the block returns, the new content survives a power loss.

    Args:
        path: the file to replace.
        before_commit: called after the fsync, just before the rename; what it raises leaves `path` as it was
            (default: nothing). A writer's lease check (`Experiment.check_writer`): the fsync can take seconds on
            a loaded disk, and a writer frozen meanwhile that lost its folder must not commit on waking. The check
            narrows the window to the microseconds between it and the rename; it does not close it (no file
            system offers a rename conditional on a lease).

    Example:

    ```python
    with replaced_atomically("run.json") as tmp:
        tmp.write_text("{}")
    ```
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    # mode 0o666 less the umask, as open() gives (mkstemp's 0o600 hid run.json from a lab's group)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp
        fsync_file(tmp)
        before_commit()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


@contextlib.contextmanager
def folder_replaced_atomically(tmp: PathLike, final: PathLike, replace_existing: bool = False,
                               before_commit: Callable[[], None] = lambda: None) -> Iterator[Path]:
    """Yields `tmp` (not yet created) to write a folder into; on success fsyncs all of it, renames it to `final` and
    fsyncs the parent folder (durable when this returns); removes it on failure.

    A stale `tmp` of the same name (a killed predecessor with this pid: a restarted container) is removed first.

    Args:
        tmp: the temporary folder's path.
        final: the folder's path.
        replace_existing: an existing `final` is moved aside (`hidden_for_removal`) only once `tmp` is durable, put
            back if the rename fails, and removed after it (default False: `final` must not exist).
        before_commit: called once `tmp` is durable, just before the rename; what it raises removes `tmp` and leaves
            `final` as it was (default: nothing). See `replaced_atomically`.

    Example:

    ```python
    with folder_replaced_atomically(folder / f".tmp-ckpt-3-{os.getpid()}", folder / "ckpt-3") as tmp:
        tmp.mkdir()
        (tmp / "state.json").write_text("{}")
    ```
    """
    tmp, final = Path(tmp), Path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    doomed = None
    try:
        yield tmp
        fsync_tree(tmp)
        before_commit()
        doomed = hidden_for_removal(final) if replace_existing and final.exists() else None
        try:
            os.replace(tmp, final)
        except BaseException:
            if doomed is not None:
                os.replace(doomed, final)  # the old folder back: the failed rename loses nothing
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_folder(final.parent)
    if doomed is not None:
        shutil.rmtree(doomed, ignore_errors=True)


def write_text_atomically(path: PathLike, text: str, before_commit: Callable[[], None] = lambda: None) -> None:
    """Replaces the file at `path` by `text` in one rename (`before_commit`: see `replaced_atomically`)."""
    with replaced_atomically(path, before_commit) as tmp:
        tmp.write_text(text)


def copy_atomically(source: PathLike, path: PathLike) -> None:
    """Copies the file `source` to `path` durably (a reader sees the old file or the whole copy). A disk that takes
    no more (full, a quota, read-only) is said of `path`: shutil names the source, which is not where it failed."""
    try:
        with replaced_atomically(path) as tmp:
            shutil.copyfile(source, tmp)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            error.filename, error.filename2 = str(path), None
        raise


def write_json_atomically(path: PathLike, data: object, before_commit: Callable[[], None] = lambda: None) -> None:
    """Replaces the file at `path` by `data` as indented JSON (values JSON lacks written as str), in one rename
    (`before_commit`: see `replaced_atomically`)."""
    write_text_atomically(path, json.dumps(data, indent=2, default=str) + "\n", before_commit)


def remove_tree_atomically(path: PathLike) -> None:
    """Renames a folder to a dot-prefixed name first, so it vanishes at once for readers."""
    shutil.rmtree(hidden_for_removal(path), ignore_errors=True)


def hidden_for_removal(path: PathLike, durable: bool = False) -> Path:
    """Renames a file or folder to `.deleting-<name>-<pid>` in the same folder (gone at once for readers; what a
    crash leaves there is a dead writer's leftover, see `remove_leftovers`); returns the new path.

    Args:
        path: what is to be removed.
        durable: fsync the folder after the rename (default False), so a power loss during the removal that
            follows cannot bring back the name half emptied.

    Example:

    ```python
    shutil.rmtree(hidden_for_removal(run_folder / "checkpoints", durable=True), ignore_errors=True)
    ```
    """
    path = Path(path)
    doomed = path.with_name(f"{DELETING_PREFIX}{path.name}-{os.getpid()}")
    os.replace(path, doomed)
    if durable:
        fsync_folder(path.parent)
    return doomed


def is_removal_leftover(entry: PathLike) -> bool:
    """True for a `.deleting-<name>-<pid>` name whose pid is not a live process of this host (a crashed removal).

    Args:
        entry: a path or a name.

    Example:

    ```python
    [path for path in folder.iterdir() if is_removal_leftover(path)]
    ```
    """
    found = _LEFTOVER.match(Path(entry).name)
    pid = found.group("deleted_pid") if found else None
    return pid is not None and not process_alive(int(pid))


def remove_leftovers(*folders: PathLike, own_pid_is_dead: bool = False, sole_writer: bool = False,
                     of_file: str = "") -> list[str]:
    """Deletes the temporary files and folders that writers killed mid-write (kill -9, a dead node) left in
    `folders`; a live writer's are kept. Returns the names removed.

    Args:
        folders: the folders to clean (not recursively).
        own_pid_is_dead: names with this process' pid are a dead writer's too (a restarted container often gets
            the pid its killed predecessor had): true where this process has written nothing yet, as at a resume.
        sole_writer: this process holds the folders' lease (`utils/lease.py`): a name with another pid is a dead
            writer's, whatever that pid is on this host (a live writer on another node is refused the lease, and
            its pid means nothing here).
        of_file: only the temporary files of the file of this name (`.<of_file>.<pid>.<random>.tmp`), as in a
            folder holding other writers' files too (a served working folder's models.config).

    Example:

    ```python
    remove_leftovers(experiment.root, experiment.export_dir, experiment.checkpoints_dir)
    remove_leftovers(folder, of_file="models.config")
    ```
    """
    removed = []
    for name in folders:
        folder = Path(name)
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if of_file and not entry.name.startswith(f".{of_file}."):
                continue
            if _is_dead_writers(entry, own_pid_is_dead, sole_writer):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry.name)
    return removed


def is_temporary_name(name: str) -> bool:
    """Whether `name` is a writer's temporary file or folder (a write in progress, or a killed writer's): what a
    copy of a folder being written leaves out."""
    return bool(_LEFTOVER.match(name) or _OLD_TEMPORARY.match(name))


def _is_dead_writers(entry: Path, own_pid_is_dead: bool, sole_writer: bool = False) -> bool:
    found = _LEFTOVER.match(entry.name)
    if found:
        pid = int(next(value for value in found.groupdict().values() if value is not None))
        if pid == os.getpid():
            return own_pid_is_dead
        return sole_writer or not process_alive(pid)
    if _OLD_TEMPORARY.match(entry.name):
        try:
            return time.time() - entry.stat().st_mtime > OLD_TEMPORARY_SECONDS
        except OSError:
            return False
    return False
