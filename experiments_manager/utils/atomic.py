"""Writes that a reader never sees half done: write to a temporary path, then rename."""

import contextlib
import json
import os
import shutil
import uuid
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
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    # mode 0o666 less the umask, as open() gives (mkstemp's 0o600 hid run.json from a lab's group)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
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


def write_json_atomically(path, data):
    """Replaces the file at `path` by `data` as indented JSON (values JSON lacks written as str), in one rename."""
    write_text_atomically(path, json.dumps(data, indent=2, default=str) + "\n")


def remove_tree_atomically(path):
    """Renames a folder to a dot-prefixed name first, so it vanishes at once for readers."""
    path = Path(path)
    doomed = path.with_name(f".deleting-{path.name}-{os.getpid()}")
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
