"""Real file systems for tests: an ext4 image that can lose power, and a small tmpfs that fills up.

Both need root and the system's `mount` (and, for ext4, `losetup` and `mkfs.ext4`). Where the machine cannot do
it, the calling test is skipped with one reason line (`conftest.require_real_part`), and fails in CI, where
EXPERIMENTS_MANAGER_REAL_PARTS=required. Whatever the test does, what was mounted is unmounted and the loop device
detached when the `with` block ends.

Example:

```python
with ext4_image(tmp_path) as disk:
    (disk.mountpoint / "a").write_text("x")   # not fsynced
    disk.power_loss()
    assert not (disk.mountpoint / "a").exists() or (disk.mountpoint / "a").stat().st_size == 0
```
"""

import contextlib
import fcntl
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from conftest import require_real_part

EXT4_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32)
EXT4_GOING_FLAGS_NOLOGFLUSH = 2  # stop at once: neither the data nor the journal is flushed


def _missing(*programs):
    """One reason line when this process cannot mount file systems, else None."""
    if os.geteuid() != 0:
        return "mounting a file system needs root (run the tests as root, as CI does)"
    absent = [program for program in programs if shutil.which(program) is None]
    if absent:
        return f"{', '.join(absent)} not installed: apt-get install mount e2fsprogs"
    return None


def _run(*command):
    """Runs a system command; returns (ok, its output: stdout, else one line of stderr)."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode == 0:
        return True, result.stdout.strip()
    lines = (result.stderr or result.stdout).strip().splitlines()
    return False, f"`{' '.join(map(str, command))}` failed (exit {result.returncode}): {lines[-1] if lines else ''}"


def _unmount(mountpoint):
    """Unmounts; a busy mount (a process still inside) is detached lazily rather than left mounted."""
    ok, _ = _run("umount", str(mountpoint))
    if not ok:
        _run("umount", "-l", str(mountpoint))


class Ext4Image:
    """A mounted ext4 file system on a loop device, which `power_loss()` crashes and mounts again.

    Attributes:
        image: the image file.
        device: the loop device (/dev/loopN).
        mountpoint: where it is mounted (a Path).
    """

    def __init__(self, image, device, mountpoint):
        self.image, self.device, self.mountpoint = Path(image), device, Path(mountpoint)
        self.mounted = False

    def mount(self):
        ok, message = _run("mount", self.device, str(self.mountpoint))
        self.mounted = ok
        return None if ok else message

    def power_loss(self):
        """What a machine that lost power sees after rebooting: the file system stops at once (EXT4_IOC_SHUTDOWN
        with NOLOGFLUSH: neither the page cache nor the journal reaches the disk), then it is unmounted and mounted
        again (the journal replayed up to its last commit). Only what was fsynced, or written back by chance, is
        still there. No process may be writing on it any more."""
        descriptor = os.open(self.mountpoint, os.O_RDONLY)
        try:
            fcntl.ioctl(descriptor, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH))
        finally:
            os.close(descriptor)
        ok, message = _run("umount", str(self.mountpoint))
        assert ok, message
        self.mounted = False
        # A mount namespace made while this was mounted (a bwrap or unshare sandbox binding /tmp, as the image's
        # `apptainer` stand-in does for Slurm jobs) still holds the stopped file system: mounting the same loop
        # device again would give that one back, where every read fails with EIO. A new loop device on the same
        # image is a new file system, read from what reached the image file.
        _run("losetup", "-d", self.device)
        ok, message = _run("losetup", "-f", "--show", str(self.image))
        assert ok, message
        self.device = message
        message = self.mount()
        assert message is None, f"the file system did not mount again after the power loss: {message}"


@contextlib.contextmanager
def ext4_image(tmp_path, size_mb=300):
    """Yields an `Ext4Image` of `size_mb` MiB (a sparse file in `tmp_path`, default ext4 options: ordered data,
    delayed allocation) mounted on a new folder `tmp_path/ext4-*`; unmounts, detaches and deletes the image
    afterwards."""
    require_real_part(_missing("losetup", "mkfs.ext4", "mount", "umount"))
    mountpoint = Path(tempfile.mkdtemp(prefix="ext4-", dir=tmp_path))  # several images in one tmp_path are fine
    image = mountpoint.with_suffix(".img")
    device = None
    disk = None
    try:
        with open(image, "wb") as handle:
            handle.truncate(size_mb * 1024 * 1024)
        ok, message = _run("mkfs.ext4", "-q", "-F", str(image))
        if ok:
            ok, message = _run("losetup", "-f", "--show", str(image))
        if ok:
            device = message
            disk = Ext4Image(image, device, mountpoint)
            message = disk.mount()
            ok = message is None
        if not ok:
            require_real_part(f"no ext4 image could be mounted here: {message}")
        yield disk
    finally:
        if disk is not None and disk.mounted:
            _unmount(mountpoint)
        if disk is not None:
            _run("losetup", "-d", disk.device)
        elif device is not None:
            _run("losetup", "-d", device)
        image.unlink(missing_ok=True)


@contextlib.contextmanager
def tmpfs(path, size, read_only=False):
    """Mounts a tmpfs of `size` (mount's syntax: "600k", "2m") on `path` (created): a disk that fills up, or with
    `read_only` one that takes no write. Yields the path; unmounts it afterwards. `resize(path, size)` grows it."""
    require_real_part(_missing("mount", "umount"))
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    ok, message = _run("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path))
    if not ok:
        require_real_part(f"no tmpfs could be mounted here: {message}")
    try:
        yield path
    finally:
        _unmount(path)


def resize(path, size):
    """Gives the tmpfs mounted on `path` another size: the space a user frees on a full disk."""
    ok, message = _run("mount", "-o", f"remount,size={size}", str(path))
    assert ok, message


def remount_read_only(path):
    """Makes the tmpfs mounted on `path` take no more writes (what is on it stays readable): a run handed over on a
    read-only file system."""
    ok, message = _run("mount", "-o", "remount,ro", str(path))
    assert ok, message
