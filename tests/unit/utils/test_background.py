"""Background work of a training run runs at a lower CPU and I/O priority than the training thread."""

import os
import platform
import threading

import pytest

from experiments_manager.export.worker import ExportWorker
from experiments_manager.utils.background import NICENESS, io_priority, yield_to_training

pytestmark = pytest.mark.skipif(platform.system() != "Linux", reason="per-thread priorities are Linux's")


def _priorities():
    thread = threading.get_native_id()
    return os.getpriority(os.PRIO_PROCESS, thread), io_priority()


@pytest.mark.claim("background exports run at a lower CPU and I/O priority than training, the PNG's drawing at "
                   "a lower I/O priority")
def test_an_export_job_runs_at_a_lower_cpu_and_io_priority_and_the_training_thread_keeps_its_own():
    """A real `ExportWorker` job reads its thread's niceness and I/O priority (the kernel's, per thread): raised
    by `NICENESS` and best-effort level 7 (`ionice -c2 -n7`); the submitting thread's are unchanged."""
    before = _priorities()
    seen = []
    worker = ExportWorker()
    worker.submit(lambda: seen.append(_priorities()), "version 1")
    worker.wait()
    (niceness, io), = seen
    assert niceness == min(19, before[0] + NICENESS)
    assert io == (2, 7)
    assert _priorities() == before  # the training thread: as it was


def test_yield_to_training_lowers_only_the_calling_thread():
    before = _priorities()
    seen = {}

    def background():
        yield_to_training()
        seen["background"] = _priorities()

    thread = threading.Thread(target=background)
    thread.start()
    thread.join()
    assert seen["background"] == (min(19, before[0] + NICENESS), (2, 7))
    assert _priorities() == before


@pytest.mark.claim("background exports run at a lower CPU and I/O priority than training, the PNG's drawing at "
                   "a lower I/O priority")
def test_a_thread_that_holds_the_gil_keeps_its_cpu_priority_and_lowers_its_io_priority():
    """`yield_to_training(cpu=False)` (the PNG's drawing thread): no priority inversion on the GIL."""
    before = _priorities()
    seen = {}

    def drawing():
        yield_to_training(cpu=False)
        seen["drawing"] = _priorities()

    thread = threading.Thread(target=drawing)
    thread.start()
    thread.join()
    assert seen["drawing"] == (before[0], (2, 7))
