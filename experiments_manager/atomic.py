"""Writes that a reader never sees half done: write to a temporary path, then rename."""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def replaced_atomically(path):
    """Yields a temporary path next to `path`; renames it over `path` on success.

    The temporary file is removed when the block raises, so nothing
    half-written is left behind.

    Example:

    ```python
    with replaced_atomically("run.json") as tmp:
        tmp.write_text("{}")
    ```
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomically(path, text):
    """Replaces the file at `path` by `text` in one rename."""
    with replaced_atomically(path) as tmp:
        tmp.write_text(text)


def remove_tree_atomically(path):
    """Renames a folder to a dot-prefixed name first, so it vanishes at once for readers."""
    path = Path(path)
    doomed = path.with_name(f".deleting-{path.name}-{os.getpid()}")
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
