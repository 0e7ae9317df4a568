"""A file created whole in one step, or not at all: how a lease (`lease.py`), a sweep's claim and a run's names
are taken on a cluster file system, where `flock` is not reliable across nodes.

The content goes to a temporary file (fsynced), which is then hard-linked to the name: `link` fails when the name
exists, atomically on every shared file system (NFS, Lustre, GPFS, GlusterFS). Where a file system has no hard
links, `O_CREAT | O_EXCL` (a reader may then see the file empty for a moment).

Example:

```python
if create_whole(folder / "claim.json", {"pid": os.getpid()}):
    ...  # this process has it
```
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from pathlib import Path
from typing import Any

from experiments_manager.utils.atomic import fsync_file, fsync_folder


def create_whole(path: Path, data: dict[str, Any], durable: bool = True) -> bool:
    """Creates `path` holding `data` in one step (fsynced, with its folder, when `durable`); False when it exists."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    try:
        if durable:
            fsync_file(tmp)
        try:
            os.link(tmp, path)
        except (FileExistsError, FileNotFoundError):  # taken; or the holder cleaned our temporary file away
            try:  # NFS may answer a retransmitted link that succeeded with EEXIST: the link count tells
                if os.stat(tmp).st_nlink != 2:
                    return False
            except FileNotFoundError:
                return False
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
            return _create_exclusive(path, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        fsync_folder(path.parent)
    return True


def _create_exclusive(path: Path, content: bytes) -> bool:
    """`O_CREAT | O_EXCL` for file systems without hard links (a reader may see it empty for a moment)."""
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_folder(path.parent)
    return True
