"""Which errors are the machine's (one line, exit 75) and which are not (raised as they are)."""

import errno

import pytest

from experiments_manager.utils.environment_failures import environment_failure_line


def test_the_disks_failures_are_one_line_naming_the_file():
    full = OSError(errno.ENOSPC, "No space left on device", "/scratch/me/exp/run.json")
    assert environment_failure_line(full) == ("/scratch/me/exp/run.json: No space left on device: free space on that "
                                              "file system (or move the working folder)")
    read_only = PermissionError(errno.EROFS, "Read-only file system", "/project/exp")
    assert environment_failure_line(read_only).startswith("/project/exp: Read-only file system: ")


def test_tensorflow_and_hdf5_messages_count_by_their_words_or_errno():
    wrapped = RuntimeError("the export of version 2 failed")
    wrapped.__cause__ = Exception("SaveV2: ... No space left on device")
    assert "No space left on device" in environment_failure_line(wrapped, "/exp")
    assert "Disk quota exceeded" in environment_failure_line(OSError("file write failed: errno = 122, ..."), "/exp")


def test_a_permission_without_a_file_is_not_the_disks():
    """Binding port 80, a Kafka or TensorFlow 'Permission denied': a permanent error, not one to retry (75)."""
    assert environment_failure_line(PermissionError(errno.EACCES, "Permission denied")) is None
    assert environment_failure_line(Exception("grpc: Permission denied")) is None
    assert environment_failure_line(ValueError("bad value")) is None


@pytest.mark.claim("EIO and ESTALE are exit 75 with one line naming the folder; a failed write of a temporary file "
                   "names its folder")
def test_a_stale_handle_is_the_machines_and_a_temporary_file_is_named_by_its_folder():
    """ESTALE (a shared file system lost the file) is retried (75) like EIO; a failed write of `.run.json.12.tmp`
    names the folder, not a temporary name the user never sees."""
    stale = OSError(errno.ESTALE, "Stale file handle", "/cluster/exp/run.json")
    assert environment_failure_line(stale).startswith("/cluster/exp/run.json: Stale file handle: ")
    read_only = OSError(errno.EROFS, "Read-only file system", "/project/exp/.run.json.4242.1f2e3d.tmp")
    assert environment_failure_line(read_only).startswith("/project/exp: Read-only file system: ")
