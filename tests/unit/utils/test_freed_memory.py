"""utils/freed_memory.py: with big blocks mapped on their own, a big block freed goes back to the system at once (glibc
would otherwise keep blocks up to 32 MiB for the process once its threshold rose)."""

import platform
from pathlib import Path

import pytest

from experiments_manager.utils.freed_memory import map_big_blocks, return_freed_memory


def resident_mib():
    return next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_big_blocks_freed_go_back_to_the_system():
    assert map_big_blocks() is True
    before = resident_mib()
    for size in (24, 16, 20, 12):  # by default, the 24 MiB block freed raises the threshold: the others stay (20 MiB)
        block = bytearray(size << 20)
        assert resident_mib() > before + size - 4
        del block
        assert resident_mib() < before + 4, size
    return_freed_memory()  # (no harm when there is nothing to give back)
