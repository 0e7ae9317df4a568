"""Checksums of what a run commits, so that a file damaged later (overwritten in place, truncated, lost) is found
before it is trusted: a checkpoint's files (recorded in its state.json) and an exported version's files (its
`checksums.sha256`, in `sha256sum` format: `cd exported_models/3 && sha256sum -c checksums.sha256` checks it by hand).

Example:

```python
write_manifest("exported_models/.tmp-3-1234")      # before the rename that publishes it
verify_manifest("exported_models/3")               # None, or what is wrong
```
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Optional, TypedDict

from experiments_manager.utils.atomic import PathLike, fsync_folder

MANIFEST_NAME = "checksums.sha256"
_LOG = logging.getLogger(__name__)
_PART = 1 << 20


class FileDigest(TypedDict):
    """What `file_digest` returns: the file's size in bytes and its SHA-256 in hex."""

    size: int
    sha256: str


def file_digest(path: PathLike) -> FileDigest:
    """`{"size": bytes, "sha256": hex}` of a file, read in 1 MiB parts."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while part := handle.read(_PART):
            digest.update(part)
            size += len(part)
    return {"size": size, "sha256": digest.hexdigest()}


def write_manifest(folder: PathLike) -> Path:
    """Writes `folder/checksums.sha256`: the SHA-256 of every other file under `folder`, by relative path."""
    folder = Path(folder)
    lines = []
    for parent, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            path = Path(parent, name)
            relative = path.relative_to(folder).as_posix()
            if relative != MANIFEST_NAME:
                lines.append(f"{file_digest(path)['sha256']}  {relative}\n")
    manifest = folder / MANIFEST_NAME
    manifest.write_text("".join(lines))
    return manifest


def verify_manifest(folder: PathLike) -> Optional[str]:
    """What is wrong with `folder` against its `checksums.sha256` (one phrase), or None when every file listed is
    there with its content. A folder without a manifest (written before there were any) is not judged."""
    folder = Path(folder)
    try:
        text = (folder / MANIFEST_NAME).read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        return f"{MANIFEST_NAME} unreadable ({error})"
    for line in text.splitlines():
        expected, _, relative = line.partition("  ")
        if len(expected) != 64 or not relative:
            return f"{MANIFEST_NAME} damaged"
        try:
            found = file_digest(folder / relative)["sha256"]
        except OSError as error:
            return f"{relative} unreadable ({error.strerror})"
        if found != expected:
            return f"{relative} differs from what was written (SHA-256)"
    return None


def set_aside(path: PathLike, aside_name: str, why: str) -> Path:
    """Renames the folder `path` to `aside_name` beside it (`-1`, `-2`... added when taken), durably, with one
    warning line saying why (`damaged (...)`); returns the new path."""
    path = Path(path)
    aside, suffix = path.with_name(aside_name), 0
    while aside.exists():
        suffix += 1
        aside = path.with_name(f"{aside_name}-{suffix}")
    os.replace(path, aside)
    fsync_folder(path.parent)
    _LOG.warning("%s: %s; moved aside to %s", path, why, aside.name)
    return aside
