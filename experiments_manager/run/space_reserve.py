"""Space kept on a run's disk for the record of how its attempt ended, as databases keep space for their log.

A disk that fills mid-run refuses every write after, run.json's last one included: the run would stand `running` in
`list` with the cause of its stop lost. So each training attempt sets `RESERVE_BYTES` aside in its folder
(`.space_reserve`, allocated for real, not sparse) when it starts, and the ending's write that meets a full disk
gives that space back and writes again (`on_full_disk_use_reserve`). The reserve is removed when the attempt ends;
one a killed attempt left is replaced by the next. Nothing here fails a run: a disk that cannot hold the reserve
(already full, a file system without allocation) simply has none.

Example:

```python
with kept_for_the_ending(experiment.root):
    ...                                                   # the attempt
    on_full_disk_use_reserve(experiment.root, lambda: write_ending())
```
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from experiments_manager.utils.atomic import PathLike

RESERVE_NAME = ".space_reserve"
RESERVE_BYTES = 64 << 10  # run.json's largest rewrites (hundreds of versions' records) fit several times
FULL_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT})
_LOG = logging.getLogger(__name__)
Result = TypeVar("Result")


@contextlib.contextmanager
def kept_for_the_ending(folder: PathLike, fenced: Callable[[], bool] = lambda: False,
                        size: int = RESERVE_BYTES) -> Iterator[None]:
    """Within the block `folder` holds `size` bytes of reserve (best effort); removed on the way out, unless this
    process may no longer write the folder then (its lease taken: the reserve is the new writer's to replace).

    Args:
        folder: the run folder.
        fenced: True once this process must write nothing more to the folder (`Lease.fenced`; default: never).
        size: the bytes set aside (default `RESERVE_BYTES`).
    """
    path = Path(folder) / RESERVE_NAME
    try:
        with open(path, "wb") as handle:
            os.posix_fallocate(handle.fileno(), 0, size)  # glibc writes zeros where the file system cannot allocate
    except OSError as error:
        _LOG.debug("%s: no space reserve for the run's ending (%s)", folder, error)
        path.unlink(missing_ok=True)
    try:
        yield
    finally:
        if not fenced():
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


def on_full_disk_use_reserve(folder: PathLike, write: Callable[[], Result]) -> Result:
    """`write()`; when it meets a full disk (ENOSPC, EDQUOT) and `folder` holds a reserve, the reserve is freed and
    `write()` runs again in its space (its error stands otherwise)."""
    try:
        return write()
    except OSError as error:
        reserve = Path(folder) / RESERVE_NAME
        if error.errno not in FULL_DISK_ERRORS or not reserve.is_file():
            raise
        reserve.unlink(missing_ok=True)
        _LOG.debug("%s: the disk is full: its space reserve freed for the run's ending", folder)
        return write()
