"""A root built over a cached one without copying it: copy-on-write through an overlay.

The cached root's files are hard-linked into the new root (seconds, no space: a root is a few GB); every step that
writes (%files, %post, the metadata, %test) runs in an overlay mounted over that tree of links, so what the steps
write, append to or chmod is copied up into the overlay's upper folder and the linked files are never written; the
upper folder is then folded into the new root (a changed file replaces its link by a rename, a removed one, a
whiteout, is removed). So the cache, and every image that shares its files, is only ever read, whatever a recipe's
%post does, and a build from the cache needs the space of what %post changed only.

The overlay is mounted without redirect_dir, metacopy or index (a renamed lower folder is copied by the program that
renames it, as on any file system refusing the rename with EXDEV; a changed mode copies the file up whole), so the
upper folder holds only plain entries, whiteouts and opaque folders. Needs root and the kernel's overlay file system:
`unavailable` says why not, and the build then copies the cached root instead. Where it differs from a copy: a file
with two names in the image (a hard link inside it) written in place under one name gets a copy of its own (the
other name keeps the old bytes), and the root folder's own mode and times stay the kept root's.

Example:
    with copy_on_write(Path("build/.image.building-1"), Path("build/.image.layers-1")) as merged:
        (merged / "etc" / "motd").write_text("hello\\n")   # the linked etc/motd is not written
    # build/.image.building-1 now holds the result: a new etc/motd, every unchanged file a link to the cache's
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

OPTIONS = "redirect_dir=off,metacopy=off,index=off"
XATTR_PREFIX = "trusted.overlay."  # the overlay's own marks (opaque, origin, ...), dropped from folded entries


class OverlayError(RuntimeError):
    """The overlay could not be mounted or unmounted (a BuildError for the build)."""


def _mount_options(lower: Path, upper: Path, work: Path) -> str:
    for path in (lower, upper, work):
        if any(character in str(path) for character in ",:\\"):
            raise OverlayError(f"{path}: a path with ',', ':' or '\\' cannot be given to the overlay's mount")
    return f"lowerdir={lower},upperdir={upper},workdir={work},{OPTIONS}"


def _mount(lower: Path, layers: Path) -> Path:
    """Mounts an overlay of `lower` with its upper, work and merged folders made in `layers`; returns the merged one."""
    upper, work, merged = layers / "upper", layers / "work", layers / "merged"
    for folder in (upper, work, merged):
        folder.mkdir(parents=True)
    result = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", _mount_options(lower, upper, work),
                             str(merged)], capture_output=True, text=True)
    if result.returncode != 0:
        raise OverlayError(f"mount -t overlay over {lower}: {' '.join(result.stderr.split()) or result.returncode}")
    return merged


def unmount(merged: Path) -> None:
    """Unmounts `merged`; a busy one is detached (umount -l) and said as an OverlayError.

    Args:
        merged: the mount point.

    Example:
        unmount(Path("build/.image.layers-1/merged"))
    """
    if subprocess.run(["umount", str(merged)], capture_output=True).returncode == 0:
        return
    detached = subprocess.run(["umount", "-l", str(merged)], capture_output=True, text=True)
    raise OverlayError(f"umount {merged}: busy (a process of the build still uses it); "
                       f"{'detached' if detached.returncode == 0 else detached.stderr.strip()}")


def mounts_under(folder: Path) -> list[Path]:
    """The mount points at or below `folder` (a killed build's overlay), deepest first, from /proc/self/mounts.

    Args:
        folder: where to look; its links are resolved, as the mount table names real paths.

    Example:
        mounts_under(Path("build/.image.layers-1"))   # [PosixPath('/work/main/build/.image.layers-1/merged')]
    """
    prefix = str(folder.resolve())
    found = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            point = re.sub(r"\\([0-7]{3})", lambda code: chr(int(code[1], 8)), line.split()[1])  # a space: \040
            if point == prefix or point.startswith(prefix + "/"):
                found.append(Path(point))
    return sorted(found, key=lambda path: len(path.parts), reverse=True)


def unavailable(scratch: Path) -> str | None:
    """Why an overlay cannot be mounted here (not root, no overlay file system, a path it refuses), or None: a tiny
    overlay is mounted and unmounted in `scratch` to find out, in milliseconds.

    Args:
        scratch: a folder to make (and remove) where the build's layers would go.

    Example:
        unavailable(Path("build/.image.probe-1"))   # None on a Linux host as root
    """
    if os.geteuid() != 0:
        return "not root"
    (scratch / "lower").mkdir(parents=True)
    try:
        unmount(_mount(scratch / "lower", scratch / "layers"))
    except OverlayError as error:
        return str(error)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return None


def _is_whiteout(info: os.stat_result) -> bool:
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def _overlay_marks(path: Path) -> list[str]:
    return [name for name in os.listxattr(path, follow_symlinks=False) if name.startswith(XATTR_PREFIX)]


def _is_opaque(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return os.getxattr(path, XATTR_PREFIX + "opaque", follow_symlinks=False) == b"y"
    return False


def remove_entry(path: Path) -> None:
    """Removes `path` whatever it is (a folder with what it holds, a file, a link, nothing).

    Example:
        remove_entry(Path("build/.image.building-1/opt/experiments_manager"))
    """
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _drop_marks(path: Path) -> None:
    """Removes the overlay's marks from `path` and everything below it (a whiteout left in a moved folder too)."""
    for name in _overlay_marks(path):
        os.removexattr(path, name, follow_symlinks=False)
    if path.is_dir() and not path.is_symlink():
        for entry in os.scandir(path):
            if _is_whiteout(entry.stat(follow_symlinks=False)):
                os.unlink(entry.path)
            else:
                _drop_marks(Path(entry.path))


def fold(upper: Path, root: Path) -> int:
    """Applies an overlay's `upper` folder to the `root` it was mounted over, moving its entries (same file system).

    A whiteout removes the entry; an opaque folder, or any entry where `root` has another kind, replaces the entry
    whole; a folder in both is folded into and gets the upper folder's owner, mode, extended attributes and times.

    Args:
        upper: the overlay's upper folder (unmounted).
        root: the overlay's lower folder, changed here.

    Returns:
        the entries applied.

    Example:
        fold(Path("build/.image.layers-1/upper"), Path("build/.image.building-1"))   # 28 (make image)
    """
    applied = 0
    for entry in list(os.scandir(upper)):  # listed before its entries are moved out
        source, target = Path(entry.path), root / entry.name
        info = entry.stat(follow_symlinks=False)
        applied += 1
        if _is_whiteout(info):
            remove_entry(target)
            continue
        if stat.S_ISDIR(info.st_mode) and not _is_opaque(source) and target.is_dir() and not target.is_symlink():
            applied += fold(source, target)
            os.chown(target, info.st_uid, info.st_gid)
            os.chmod(target, stat.S_IMODE(info.st_mode))
            for name in os.listxattr(source):  # an ACL or a label %post set: the overlay's own marks left
                if not name.startswith(XATTR_PREFIX):
                    with contextlib.suppress(OSError):  # one this file system refuses: as `cp -a` does
                        os.setxattr(target, name, os.getxattr(source, name))
            os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
            continue
        remove_entry(target)
        _drop_marks(source)
        os.rename(source, target)
    return applied


@contextlib.contextmanager
def copy_on_write(root: Path, layers: Path, say: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Yields a folder showing `root` where every write lands in an overlay (its layers in `layers`, made and
    removed); once the block passed, the writes are folded into `root`. A failed block leaves `root` as it was.

    Args:
        root: the tree to build over (here: hard links to the cached root's files, never written).
        layers: a folder to make beside `root` (the same file system) for the overlay's upper, work and merged
            folders.
        say: told how the fold went (entries, seconds); default None: nothing said.

    Raises:
        OverlayError: the overlay could not be mounted or unmounted.

    Example:
        with copy_on_write(partial, partial.with_name(".image.layers-1")) as merged:
            run_post(recipe, merged)
    """
    merged = _mount(root, layers)
    try:
        try:
            yield merged
        except BaseException:
            with contextlib.suppress(OverlayError):  # the step's own error is the one to say
                unmount(merged)
            raise
        unmount(merged)
        start = time.monotonic()
        applied = fold(layers / "upper", root)
        if say is not None:
            say(f"the overlay's {applied} changed entries folded into {root.name}: {time.monotonic() - start:.1f} s")
    finally:
        shutil.rmtree(layers, ignore_errors=True)
