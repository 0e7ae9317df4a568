"""Background work of a training run runs at a lower I/O priority than the training thread."""

import os
import platform
import threading

import pytest

from experiments_manager.export.background_export import ExportWorker
from experiments_manager.utils.background import io_priority, yield_to_training

pytestmark = pytest.mark.skipif(platform.system() != "Linux", reason="per-thread priorities are Linux's")


def _priorities():
    thread = threading.get_native_id()
    return os.getpriority(os.PRIO_PROCESS, thread), io_priority()


@pytest.mark.claim("background exports and the PNG's drawing run at a lower I/O priority than training")
def test_an_export_job_runs_at_a_lower_io_priority_and_the_training_thread_keeps_its_own():
    """A real `ExportWorker` job reads its thread's I/O priority (the kernel's, per thread): best-effort level 7
    (`ionice -c2 -n7`); its CPU priority is the training thread's; the submitting thread's are unchanged."""
    before = _priorities()
    seen = []
    worker = ExportWorker()
    worker.submit(lambda: seen.append(_priorities()), "version 1")
    worker.wait()
    assert seen == [(before[0], (2, 7))]
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
    assert seen["background"] == (before[0], (2, 7))
    assert _priorities() == before
