"""Memory a process freed, back to the system (glibc's allocator; elsewhere nothing): a server's after a big request,
a sweep's trial host's after each trial.

glibc keeps freed memory for the process: a block of 128 KiB or more is mapped on its own and unmapped when freed,
but each such block freed raises that threshold to its size (up to 32 MiB), after which a big request's arrays come
from the heap and stay there once freed; the many small chunks gRPC receives a message in stay there too. Measured
(tools/bench_serving.py --grpc-memory, a 30 MB request to a two-output model): the server's peak rose by 6.2x the
request, its resident memory staying at each stage's peak; with big blocks always mapped and the heap trimmed once
a big request is read, 4.0-4.2x: the outputs and the answer (twice the request each), which is the floor while
the answer is one `bytes` gRPC copies as it sends it.

Example:

```python
map_big_blocks()           # once, when the server starts
...
return_freed_memory()      # after a big request's bytes were let go
```
"""

from __future__ import annotations

import ctypes
from typing import Optional

BIG_BLOCK_BYTES = 1 << 20  # blocks this big or bigger are mapped on their own, and unmapped when freed
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


def _glibc() -> Optional[ctypes.CDLL]:
    """The process' own symbols when its C library is glibc's (they hold `malloc_trim` and `mallopt`), else None."""
    try:
        library = ctypes.CDLL(None)  # dlopen(NULL): what the process has loaded, no search
    except OSError:
        return None
    return library if hasattr(library, "malloc_trim") and hasattr(library, "mallopt") else None


def map_big_blocks(threshold: int = BIG_BLOCK_BYTES) -> bool:
    """Has glibc map every block of `threshold` bytes or more on its own (a fixed threshold: freed, it goes back to
    the system at once). Process-wide; a server calls it as it starts.

    Args:
        threshold: the size from which a block is mapped (default `BIG_BLOCK_BYTES`, 1 MiB).

    Returns:
        whether the allocator took it (False: not glibc).
    """
    library = _glibc()
    return bool(library is not None and library.mallopt(_M_MMAP_THRESHOLD, threshold))


def return_freed_memory() -> bool:
    """Gives the free pages of glibc's heap back to the system (`malloc_trim(0)`: a few ms): after a big request's
    bytes were let go, what gRPC received it in is not kept for the rest of the request.

    Returns:
        whether memory was given back (False: none, or not glibc).
    """
    library = _glibc()
    return bool(library is not None and library.malloc_trim(0))
